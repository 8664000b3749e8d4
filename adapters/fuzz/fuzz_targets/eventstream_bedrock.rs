#![no_main]

//! AWS event-stream framing: arbitrary bytes in arbitrary chunks never panic, and the messages
//! (or the error) that come out do not depend on where the input was split.

use libfuzzer_sys::fuzz_target;
use switchyard_adapters::bedrock::eventstream::Framer;
use switchyard_adapters_fuzz::chunks;

fuzz_target!(|data: &[u8]| {
    let (count, seed, body) = match data {
        [c, s, rest @ ..] => (*c, *s, rest),
        _ => (0, 0, data),
    };
    let mut whole = Vec::new();
    Framer::new().push(body, &mut whole);
    let mut split = Vec::new();
    let mut f = Framer::new();
    for chunk in chunks(count, seed, body) {
        f.push(chunk, &mut split);
    }
    assert_eq!(whole, split);
});
