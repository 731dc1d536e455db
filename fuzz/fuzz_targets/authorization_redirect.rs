#![no_main]
// Input format: see token_core::fuzzing::authorization_redirect_input (shared with
// tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| token_core::fuzzing::authorization_redirect_input(data));
