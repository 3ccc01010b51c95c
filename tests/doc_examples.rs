//! The command examples of the docs, run as they are written: every
//! ```` ```console ```` block of these files is a trycmd case (`$ command`,
//! `> ` continuing it, `? N` the exit code, then stdout and stderr; `...`
//! stands for lines left out, `[..]` for part of a line). A changed output
//! fails here until the doc shows it. To rewrite the docs' blocks with what
//! the binary prints now: `TRYCMD=overwrite cargo test --test doc_examples`
//! (then put back any `...`).
//!
//! Blocks of other languages (`sh`, `text`, `yaml`) are not run: they need
//! a cluster, helm or a shell. README.md and docs/check-audit.md run from
//! the repository's root; certs/README.md writes files, so it runs in an
//! empty scratch folder.

use std::path::Path;

fn cases() -> trycmd::TestCases {
    let cases = trycmd::TestCases::new();
    cases
        .register_bin(
            "sts-guard",
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_sts-guard")),
        )
        // Logs stay off whatever the caller's environment says.
        .env("RUST_LOG", "off");
    cases
}

#[test]
fn readme_and_check_audit_docs() {
    cases().case("README.md").case("docs/check-audit.md").run();
}

#[test]
fn certs_readme_in_a_scratch_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    // trycmd runs a case in a sandbox when `<case>.out/` exists, starting
    // from a copy of `<case>.in/`; both empty here.
    let case = scratch.path().join("certs-README.md");
    std::fs::copy(root.join("certs/README.md"), &case).unwrap();
    std::fs::create_dir(scratch.path().join("certs-README.in")).unwrap();
    std::fs::create_dir(scratch.path().join("certs-README.out")).unwrap();
    cases().case(&case).run();
}
