//! `cargo run --example bench-bodies -- DIR`: writes the AdmissionReview
//! bodies of the load benchmark and the criterion benches
//! (benches/support/bodies.rs) into DIR, one `<name>.json` each.

#[path = "../benches/support/bodies.rs"]
mod bodies;

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: bench-bodies DIR");
        return ExitCode::from(2);
    };
    match bodies::write(std::path::Path::new(&dir)) {
        Ok(written) => {
            for (path, size) in written {
                eprintln!("{}: {size} bytes", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-bodies: writing into {}: {e}", dir.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}
