//! Arbitrary bytes into the webhook's decode and review, both endpoints.
//! The whole input is the HTTP body; its length picks the policy, so the
//! seeds (real reviews) are used as they are.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_body(data, data.len());
});
