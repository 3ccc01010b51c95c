//! Arbitrary bytes into the webhook's decode and review, both endpoints.
//! The whole input is the HTTP body; its length picks the policy, so the
//! seeds (real reviews) are used as they are.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sts_guard::webhook::routes::MAX_BODY_BYTES;

fuzz_target!(|data: &[u8]| {
    // The HTTP edge answers 413 to anything larger (run.sh's -max_len keeps
    // inputs far below it anyway).
    if data.len() > MAX_BODY_BYTES {
        return;
    }
    common::check_body(data, data.len());
});
