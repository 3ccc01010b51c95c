//! Front doors other than `serve`: `check`, `audit`, `certs`, `policy`.

pub mod audit;
pub mod certs;
pub mod check;
pub mod policy;
pub mod report;
mod sarif;
pub mod simulate;
mod text;

use std::error::Error;
use std::io::{self, BufWriter, Write};

use report::{Format, RunReport};

/// Exit code of `check` and `audit` when the input or the cluster cannot be
/// read, or the flags make no sense (clap uses 2 for usage errors too).
pub const EXIT_ERROR: u8 = 2;

/// Writes the report to stdout, or the error to stderr, and returns the exit
/// code: 0 when nothing would be denied, 1 when something would, 2 on error.
pub fn finish<E: Error + 'static>(result: Result<RunReport, E>, format: Format) -> u8 {
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {}", crate::kube_errors::describe(&e));
            return EXIT_ERROR;
        }
    };
    if format != Format::Text {
        // The text report lists them itself; JSON and SARIF go to a file.
        for e in &report.errors {
            eprintln!("error: {e}");
        }
    }
    if report.documents == Some(0) && report.errors.is_empty() {
        // `helm template ... | sts-guard check -f -` after a failed render
        // (no pipefail) must not pass silently.
        eprintln!("warning: no objects were read from the input; nothing was checked");
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let written = match format {
        Format::Text => text::write(&report, &mut out),
        Format::Json => report.write_json(&mut out),
        Format::Sarif => sarif::write(&report, &mut out),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => report.exit_code(),
        // `check ... | head`: the reader has seen enough; the verdict stands.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => report.exit_code(),
        Err(e) => {
            eprintln!("error: writing the report: {e}");
            EXIT_ERROR
        }
    }
}
