//! The files tidemark owns: reached, created, truncated and deleted without following a
//! symbolic link.
//!
//! Every directory tidemark writes into (its output directory's `replay/`, the buffer's stream
//! and state directories, a model registry) and every file it creates there is checked to be
//! no link before it is touched, and files are opened with `O_NOFOLLOW` besides, so a link
//! planted where tidemark expects its own file or directory is an error naming it rather than a
//! way to make tidemark delete or truncate files elsewhere. The directory the user names
//! (`outputs.dir`, `--out`, a registry path) may itself be reached through links: it is the
//! user's choice; what tidemark creates inside it is not.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

const LINK: &str = "is a symbolic link where tidemark keeps its own files; it does not follow links \
                    where it writes, truncates or deletes (replace it with a real directory or file)";

fn refuse(path: &Path, reason: &str) -> Error {
    Error::Confined {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Refuses an output directory that would spread tidemark's files where they do not belong:
/// empty or the file system's root.
pub fn output_dir(dir: &Path) -> std::result::Result<(), String> {
    if dir.as_os_str().is_empty() {
        return Err("is empty; name a directory of the job's own".into());
    }
    let resolved = std::fs::canonicalize(dir).ok();
    if dir == Path::new("/") || resolved.as_deref() == Some(Path::new("/")) {
        return Err("is the file system's root; name a directory of the job's own".into());
    }
    Ok(())
}

/// Refuses the working directory itself as the directory a run writes into (checked when a run
/// starts, not when a job is loaded: other commands may run from inside an output directory).
pub fn not_working_dir(dir: &Path) -> std::result::Result<(), String> {
    let resolved = std::fs::canonicalize(dir).ok();
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|c| std::fs::canonicalize(c).ok());
    if resolved.is_some() && resolved == cwd {
        return Err(
            "is the working directory itself; name a directory of the job's own (e.g. out/<job>)"
                .into(),
        );
    }
    Ok(())
}

/// Refuses a symbolic link at `path`; a missing path is fine.
pub fn not_link(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(refuse(path, LINK)),
        _ => Ok(()),
    }
}

/// Creates the directory `dir` (and its parents) and refuses it if it is a link.
pub fn create_dir(dir: &Path) -> Result<()> {
    not_link(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    not_link(dir)?;
    if !dir.is_dir() {
        return Err(refuse(dir, "is not a directory"));
    }
    Ok(())
}

fn open(path: &Path, o: &mut OpenOptions) -> Result<File> {
    not_link(path)?;
    o.custom_flags(libc::O_NOFOLLOW).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            refuse(path, LINK)
        } else {
            Error::io(path, e)
        }
    })
}

/// Creates or truncates `path` for writing, not through a link.
pub fn create(path: &Path) -> Result<File> {
    open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )
}

/// Opens an existing `path` for appending, not through a link.
pub fn append(path: &Path) -> Result<File> {
    open(path, OpenOptions::new().append(true))
}

/// Opens an existing `path` for reading and writing (to cut it back), not through a link.
pub fn read_write(path: &Path) -> Result<File> {
    open(path, OpenOptions::new().read(true).write(true))
}

/// Opens (creating if needed) a lock file without truncating it and not through a link.
pub fn lock_file(path: &Path) -> Result<File> {
    open(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
}

/// Removes the file `path` if it exists; a link there is refused rather than removed (it is
/// not a file tidemark wrote).
pub fn remove(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
        Ok(m) if m.file_type().is_symlink() => Err(refuse(path, LINK)),
        Ok(m) if m.is_dir() => Err(refuse(
            path,
            "is a directory where tidemark expects a file it wrote; it is left alone",
        )),
        Ok(_) => std::fs::remove_file(path)
            .map(|_| true)
            .map_err(|e| Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_and_their_targets_untouched() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        let link = d.path().join("LOCK");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for r in [
            lock_file(&link).map(|_| ()),
            create(&link).map(|_| ()),
            append(&link).map(|_| ()),
            remove(&link).map(|_| ()),
            create_dir(&link),
        ] {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("symbolic link") && e.contains("LOCK"), "{e}");
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        assert!(link.exists());
    }

    #[test]
    fn the_root_the_empty_path_and_the_working_directory_are_no_output_directory() {
        for d in ["", "/", "/."] {
            assert!(output_dir(Path::new(d)).is_err(), "{d:?}");
        }
        let cwd = std::env::current_dir().unwrap();
        assert!(not_working_dir(Path::new(".")).is_err());
        assert!(not_working_dir(&cwd).is_err());
        assert!(output_dir(&cwd.join("out/job")).is_ok());
        assert!(not_working_dir(&cwd.join("out/job")).is_ok());
    }

    #[test]
    fn a_lock_file_is_not_truncated() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("LOCK");
        std::fs::write(&p, b"pid 1").unwrap();
        drop(lock_file(&p).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"pid 1");
    }
}
