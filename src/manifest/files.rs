//! Finding the inputs (files, folders, stdin) and their text.

use std::path::{Path, PathBuf};

use super::{FileRead, InputError, STDIN_NAME, read_text};

/// One file, or stdin when `None`.
pub(super) fn read_input(file: Option<&Path>, default_namespace: &str) -> FileRead {
    let (shown, bytes) = match file {
        None => {
            let mut bytes = Vec::new();
            let result = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes);
            (STDIN_NAME.to_string(), result.map(|_| bytes))
        }
        Some(file) => (file.display().to_string(), std::fs::read(file)),
    };
    match bytes {
        Ok(bytes) => read_text(&text_of(&bytes), &shown, default_namespace),
        Err(source) => FileRead {
            error: Some(InputError::Read {
                path: shown,
                source,
            }),
            ..FileRead::default()
        },
    }
}

/// The text of a file: bytes that are not UTF-8 replaced by U+FFFD.
pub(super) fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file as itself; a folder as its manifest files, sorted, recursively.
/// A path given by the user is followed even if it is a symlink.
pub(super) fn files_under(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let read_error = |p: &Path, source| InputError::Read {
        path: p.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_error(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| read_error(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| read_error(&dir, e))?;
            let p = entry.path();
            // Symlinked folders are not followed (a link to a parent would
            // never end), as kubectl's -R does not; symlinked files are read.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                stack.push(p);
            } else if is_manifest(&p) && p.is_file() {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}
