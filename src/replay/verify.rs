//! Comparing output directories: a digest per changelog over a timestamp range, and the first
//! line where two directories differ.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// The digest of one changelog's lines within a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Lines within the range.
    pub lines: u64,
    /// SHA-256 of those lines (each with its newline), hex.
    pub sha256: String,
}

/// Where two output directories first differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The changelog file.
    pub file: String,
    /// 1-based index of the differing line among the in-range lines.
    pub line: u64,
    /// The line in the first directory (`None` past its end, or the file is missing).
    pub a: Option<String>,
    /// The line in the second directory.
    pub b: Option<String>,
}

/// The changelog files (`*.jsonl`) of an output directory, by name.
pub fn changelogs(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = BTreeMap::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".jsonl") && e.path().is_file() {
            out.insert(name, e.path());
        }
    }
    Ok(out)
}

/// The `ts` of a changelog line.
fn line_ts(path: &Path, n: u64, line: &str) -> Result<u64> {
    line.strip_prefix("{\"ts\":")
        .and_then(|r| r.split(',').next())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            Error::replay(
                path,
                format!("line {n} is not a changelog line (no leading ts)"),
            )
        })
}

/// Reads the lines of `path` whose `ts` is in `range`.
fn lines_in(path: &Path, range: &Range<u64>) -> Result<Vec<String>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if range.contains(&line_ts(path, i as u64 + 1, &line)?) {
            out.push(line);
        }
    }
    Ok(out)
}

/// Digests every changelog of `dir` over `range`.
pub fn digest(dir: &Path, range: Range<u64>) -> Result<BTreeMap<String, FileDigest>> {
    let mut out = BTreeMap::new();
    for (name, path) in changelogs(dir)? {
        let lines = lines_in(&path, &range)?;
        let mut h = Sha256::new();
        for l in &lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        out.insert(
            name,
            FileDigest {
                lines: lines.len() as u64,
                sha256,
            },
        );
    }
    Ok(out)
}

/// One digest over a whole directory's digests, for a one-line comparison.
pub fn combined(digests: &BTreeMap<String, FileDigest>) -> String {
    let mut h = Sha256::new();
    for (name, d) in digests {
        h.update(format!("{name} {} {}\n", d.lines, d.sha256).as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares the changelogs of two directories over `range`; `None` if they are identical.
pub fn compare(a: &Path, b: &Path, range: Range<u64>) -> Result<Option<Difference>> {
    let (fa, fb) = (changelogs(a)?, changelogs(b)?);
    let mut names: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let la = match fa.get(name) {
            Some(p) => Some(lines_in(p, &range)?),
            None => None,
        };
        let lb = match fb.get(name) {
            Some(p) => Some(lines_in(p, &range)?),
            None => None,
        };
        let (la, lb) = match (la, lb) {
            (Some(x), Some(y)) => (x, y),
            (x, y) => {
                return Ok(Some(Difference {
                    file: name.clone(),
                    line: 0,
                    a: x.map(|_| "(present)".into()),
                    b: y.map(|_| "(present)".into()),
                }))
            }
        };
        let n = la.len().max(lb.len());
        for i in 0..n {
            if la.get(i) != lb.get(i) {
                return Ok(Some(Difference {
                    file: name.clone(),
                    line: i as u64 + 1,
                    a: la.get(i).cloned(),
                    b: lb.get(i).cloned(),
                }));
            }
        }
    }
    Ok(None)
}
