#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_adapters::canonical::Dialect;
use switchyard_adapters_fuzz::check_response;

fuzz_target!(|data: &[u8]| {
    check_response(Dialect::Bedrock, data);
});
