#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_adapters::canonical::Dialect;
use switchyard_adapters_fuzz::check_stream;

fuzz_target!(|data: &[u8]| {
    check_stream(Dialect::Bedrock, data);
});
