#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_adapters::providers::Caller;
use switchyard_adapters_fuzz::check_request;

fuzz_target!(|data: &[u8]| {
    check_request(Caller::OpenAi, data);
});
