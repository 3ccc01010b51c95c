//! Front doors other than `serve`: `check`, `audit`, `certs`.

pub mod certs;
pub mod input;
