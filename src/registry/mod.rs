//! The model registry: a directory of immutable version files and one registry file of
//! aliases, pause state and history.
//!
//! Layout: `<dir>/versions/<version>.json` (written once, never changed) and
//! `<dir>/REGISTRY.json`. Every write is crash-safe ([`atomic`]); a version file is written
//! before the registry file names it, so a crash never leaves an alias naming a missing file.
//! A version file carries a SHA-256 checksum of its content; a file whose checksum, shape or
//! numbers are wrong is refused, naming the file and the field.

pub mod atomic;
pub mod card;
pub mod ops;
pub mod score;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::learn::model::Model;

/// The registry file's name.
pub const REGISTRY: &str = "REGISTRY.json";
/// The subdirectory of version files.
pub const VERSIONS: &str = "versions";

/// One published model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFile {
    /// Its name, `v` and six digits.
    pub version: String,
    /// The version it was trained on from.
    pub parent: Option<String>,
    /// The job that trained it.
    pub job: String,
    /// Parameters, feature spec and optimizer state.
    pub model: Model,
    /// First and last timestamp of the examples it learned (inclusive).
    pub trained_from_ts: u64,
    /// Last timestamp of the examples it learned.
    pub trained_through_ts: u64,
    /// Examples learned.
    pub examples: u64,
    /// Its prequential metrics over the canary window when published.
    pub metrics: VersionMetrics,
    /// How to reproduce it: `tidemark replay JOB --from <from_ts> --to <to_ts>` over the job's
    /// replay buffer (the learner continues from its snapshot at or before `from_ts`).
    pub lineage: Lineage,
    /// The `[learn]` settings it was trained with (absent from files written before they were
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperparameters: Option<crate::learn::spec::LearnSpec>,
    /// SHA-256 of the file with this field empty.
    pub checksum: String,
}

/// Prequential metrics of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionMetrics {
    /// Examples in the canary window.
    pub window_examples: u64,
    /// Mean log-loss of the online model's predictions over them.
    pub log_loss: Option<f64>,
    /// Accuracy at the job's threshold over them.
    pub accuracy: Option<f64>,
}

/// The replay range a version came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    /// The job's definition fingerprint (as in its replay buffer's manifest).
    pub job_fingerprint: String,
    /// First timestamp of the range.
    pub from_ts: u64,
    /// End of the range (exclusive).
    pub to_ts: u64,
}

impl VersionFile {
    /// The checksum of this file's content.
    pub fn compute_checksum(&self) -> String {
        let mut c = self.clone();
        c.checksum = String::new();
        let bytes = serde_json::to_vec(&c).expect("version files serialize");
        crate::replay::segment::sha256_hex(&bytes)
    }

    /// This file with its checksum set.
    pub fn sealed(mut self) -> VersionFile {
        self.checksum = self.compute_checksum();
        self
    }

    /// Its hyperparameters as (key, value) text, sorted by key: the `[learn]` settings it was
    /// trained with flattened to dotted keys (`learning_rate.rate`, `canary.window`, …), and
    /// the model's loss and features (`model.*`).
    pub fn hyperparameter_list(&self) -> Vec<(String, String)> {
        let file = self;
        let mut out = Vec::new();
        match &file.hyperparameters {
            Some(h) => flatten("", &serde_json::to_value(h).unwrap_or_default(), &mut out),
            None => out.push((
                "hyperparameters".into(),
                "not recorded (version file written before they were)".into(),
            )),
        }
        for (k, v) in out.iter_mut() {
            if k == "features" && v.is_empty() {
                *v = "all".into();
            }
        }
        let f = &file.model.features;
        fn names(v: &[(String, usize)]) -> String {
            v.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(",")
        }
        out.push((
            "model.loss".into(),
            format!("{:?}", file.model.loss).to_lowercase(),
        ));
        out.push(("model.numeric".into(), names(&f.numeric)));
        out.push(("model.categorical".into(), names(&f.categorical)));
        out.push(("model.hash_bits".into(), f.hash_bits.to_string()));
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }
}

/// The registry file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// The version serving should use.
    pub champion: Option<String>,
    /// The latest version that did not pass the gate, if newer than the champion.
    pub challenger: Option<String>,
    /// Updates are paused after a rollback until resumed.
    pub paused: bool,
    /// The last job decision applied (job decisions are numbered; re-applying is a no-op).
    pub applied_seq: u64,
    /// Every change, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// One change of the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// The job decision's number, for changes made by a job.
    pub seq: Option<u64>,
    /// The job timestamp of the decision, for changes made by a job.
    pub ts: Option<u64>,
    /// `promote`, `block`, `rollback`, `pause`, `resume`, `update_failed`, `rate_boost`,
    /// `rate_reset`, or `refuse` (an operator's command the job could not apply).
    pub action: String,
    /// The version concerned.
    pub version: Option<String>,
    /// The champion after the change.
    pub champion: Option<String>,
    /// Why.
    pub reason: String,
    /// `job` or `operator`.
    pub by: String,
    /// The operator's command this applied (`tidemark models …` on a running job), by number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<u64>,
}

/// A registry directory; a writer holds its `LOCK` (flock) while it lives.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
    _lock: Option<std::sync::Arc<std::fs::File>>,
}

/// Takes the registry's lock; fails if another process (a running job, an operator) holds it.
fn take_lock(dir: &Path) -> Result<std::sync::Arc<std::fs::File>> {
    try_lock(dir)?.ok_or_else(|| {
        refuse(
            &dir.join("LOCK"),
            "another process is changing this registry (a running job publishes to it)",
        )
    })
}

/// Takes the registry's lock if no other process holds it (`None`: one does).
fn try_lock(dir: &Path) -> Result<Option<std::sync::Arc<std::fs::File>>> {
    let path = dir.join("LOCK");
    let file = crate::confine::lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(std::sync::Arc::new(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn refuse(path: &Path, reason: impl Into<String>) -> Error {
    Error::registry(path, reason)
}

impl Registry {
    /// Opens (creating if needed) the registry in `dir` for writing, holding its lock, and
    /// removes temporaries a crash left.
    pub fn open(dir: &Path) -> Result<Registry> {
        let versions = dir.join(VERSIONS);
        // The registry directory is the user's to place (a link is fine); what is inside is ours.
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::confine::create_dir(&versions)?;
        let lock = take_lock(dir)?;
        for d in [dir, versions.as_path()] {
            for entry in std::fs::read_dir(d).map_err(|e| Error::io(d, e))? {
                let entry = entry.map_err(|e| Error::io(d, e))?;
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    crate::confine::remove(&entry.path())?;
                }
            }
        }
        Ok(Registry {
            dir: dir.to_path_buf(),
            _lock: Some(lock),
        })
    }

    /// Opens an existing registry for an operator's change, holding its lock.
    pub fn locked(dir: &Path) -> Result<Registry> {
        let mut reg = Registry::existing(dir)?;
        reg._lock = Some(take_lock(dir)?);
        Ok(reg)
    }

    /// Opens an existing registry for an operator's change if no one holds its lock (`None`:
    /// a running job does).
    pub fn try_locked(dir: &Path) -> Result<Option<Registry>> {
        let mut reg = Registry::existing(dir)?;
        Ok(try_lock(dir)?.map(|lock| {
            reg._lock = Some(lock);
            reg
        }))
    }

    /// Opens an existing registry for reading (renames make every read see whole files).
    pub fn existing(dir: &Path) -> Result<Registry> {
        if !dir.join(VERSIONS).is_dir() {
            return Err(refuse(dir, "not a model registry (no versions/ directory)"));
        }
        Ok(Registry {
            dir: dir.to_path_buf(),
            _lock: None,
        })
    }

    /// The registry's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a version's file.
    pub fn version_path(&self, version: &str) -> PathBuf {
        self.dir.join(VERSIONS).join(format!("{version}.json"))
    }

    /// The registry file (empty if none was written yet).
    pub fn read(&self) -> Result<RegistryFile> {
        let path = self.dir.join(REGISTRY);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| refuse(&path, format!("not a registry file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistryFile::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Replaces the registry file.
    pub fn write(&self, file: &RegistryFile) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(file).expect("registry files serialize");
        atomic::write_atomic(&self.dir.join(REGISTRY), &bytes)
    }

    /// Reads and checks one version file.
    pub fn version(&self, version: &str) -> Result<VersionFile> {
        read_version(&self.version_path(version))
    }

    /// Every version file's name, sorted.
    pub fn versions(&self) -> Result<Vec<String>> {
        let d = self.dir.join(VERSIONS);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let name = entry
                .map_err(|e| Error::io(&d, e))?
                .file_name()
                .to_string_lossy()
                .to_string();
            if let Some(v) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            {
                out.push(v.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes a version file, once: an identical file already there is kept (a restarted job
    /// publishes the same versions again); a different one is refused.
    pub fn publish(&self, file: &VersionFile) -> Result<()> {
        let path = self.version_path(&file.version);
        if path.exists() {
            let old = read_version(&path)?;
            if old.checksum == file.checksum {
                return Ok(());
            }
            return Err(refuse(
                &path,
                format!(
                    "version {} exists with checksum {}, the job published {}: two jobs share this registry?",
                    file.version, old.checksum, file.checksum
                ),
            ));
        }
        let bytes = serde_json::to_vec_pretty(file).expect("version files serialize");
        atomic::write_atomic(&path, &bytes)
    }

    /// Applies a job's decision `seq` with its history entry, unless already applied: a
    /// decision on an operator's command once per command and action (its number is the
    /// operator's, whatever the job's decision numbers), any other once per number.
    pub fn apply(
        &self,
        seq: u64,
        entry: HistoryEntry,
        update: impl FnOnce(&mut RegistryFile),
    ) -> Result<()> {
        let mut file = self.read()?;
        let done = match entry.command {
            Some(c) => file
                .history
                .iter()
                .any(|h| h.command == Some(c) && h.action == entry.action),
            None => seq <= file.applied_seq,
        };
        if done {
            return Ok(());
        }
        update(&mut file);
        file.applied_seq = file.applied_seq.max(seq);
        file.history.push(entry);
        self.write(&file)
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Array(a) if a.iter().all(Value::is_string) => out.push((
            prefix.to_string(),
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        )),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Reads a version file and checks its shape, numbers and checksum.
pub fn read_version(path: &Path) -> Result<VersionFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        refuse(
            path,
            format!("not a model version (truncated or not JSON): {e}"),
        )
    })?;
    // NaN and infinities are written as null by JSON encoders: name the first such weight.
    if let Some(ws) = value.pointer("/model/weights").and_then(|w| w.as_array()) {
        if let Some(i) = ws
            .iter()
            .position(|w| !w.as_f64().is_some_and(f64::is_finite))
        {
            return Err(refuse(
                path,
                format!("model.weights[{i}] is {}, not a finite number", ws[i]),
            ));
        }
    }
    if let Some(b) = value.pointer("/model/bias") {
        if !b.as_f64().is_some_and(f64::is_finite) {
            return Err(refuse(
                path,
                format!("model.bias is {b}, not a finite number"),
            ));
        }
    }
    let file: VersionFile = serde_json::from_value(value)
        .map_err(|e| refuse(path, format!("not a model version: {e}")))?;
    let sum = file.compute_checksum();
    if sum != file.checksum {
        return Err(refuse(
            path,
            format!(
                "checksum mismatch: the file says {}, its content hashes to {sum}",
                file.checksum
            ),
        ));
    }
    let m = &file.model;
    if m.features.hash_bits > 24 {
        return Err(refuse(path, "model.features.hash_bits above 24"));
    }
    let d = m.features.dim();
    if m.weights.len() != d || m.g2.len() != d + 1 || m.scaler.n.len() != m.features.numeric.len() {
        return Err(refuse(
            path,
            format!(
                "model.weights has {} entries, its feature spec needs {d}",
                m.weights.len()
            ),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::model::{FeatureSpec, Model};
    use crate::learn::spec::Loss;

    fn file() -> VersionFile {
        let mut model = Model::new(
            Loss::Log,
            FeatureSpec {
                numeric: vec![("amount".into(), 0)],
                categorical: vec![("country".into(), 0)],
                hash_bits: 2,
            },
        );
        model.weights[0] = 0.5;
        VersionFile {
            version: "v000001".into(),
            parent: None,
            job: "t".into(),
            model,
            trained_from_ts: 1,
            trained_through_ts: 2,
            examples: 3,
            metrics: VersionMetrics {
                window_examples: 0,
                log_loss: None,
                accuracy: None,
            },
            lineage: Lineage {
                job_fingerprint: "f".into(),
                from_ts: 1,
                to_ts: 3,
            },
            hyperparameters: None,
            checksum: String::new(),
        }
        .sealed()
    }

    fn refused(path: &Path) -> String {
        read_version(path).unwrap_err().to_string()
    }

    #[test]
    fn bad_version_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let f = file();
        reg.publish(&f).unwrap();
        let path = reg.version_path("v000001");
        assert_eq!(reg.version("v000001").unwrap(), f);
        let good = std::fs::read_to_string(&path).unwrap();

        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(
            refused(&path).contains("truncated or not JSON"),
            "{}",
            refused(&path)
        );

        std::fs::write(&path, good.replacen("0.5", "0.25", 1)).unwrap();
        assert!(
            refused(&path).contains("checksum mismatch"),
            "{}",
            refused(&path)
        );

        // How JSON encoders write NaN.
        let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
        v["model"]["weights"][3] = serde_json::Value::Null;
        std::fs::write(&path, v.to_string()).unwrap();
        assert!(
            refused(&path).contains("model.weights[3] is null, not a finite number"),
            "{}",
            refused(&path)
        );
        std::fs::write(&path, good.replacen("0.5", "1e999", 1)).unwrap();
        assert!(refused(&path).contains("not"), "{}", refused(&path));

        // A well-sealed file whose weights do not fit its feature spec.
        let mut short = f.clone();
        short.model.weights.pop();
        std::fs::write(&path, serde_json::to_vec(&short.sealed()).unwrap()).unwrap();
        assert!(refused(&path).contains("needs 5"), "{}", refused(&path));
        assert!(refused(&path).contains(&path.display().to_string()));
    }

    #[test]
    fn publishing_is_idempotent_and_refuses_a_different_file_under_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let f = file();
        reg.publish(&f).unwrap();
        reg.publish(&f).unwrap();
        let mut g = f.clone();
        g.examples = 4;
        let g = g.sealed();
        let e = reg.publish(&g).unwrap_err().to_string();
        assert!(e.contains("two jobs share this registry"), "{e}");
        // One writer at a time.
        let e = Registry::locked(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("another process is changing this registry"),
            "{e}"
        );
        drop(reg);
        // Leftover temporaries of a crashed write are removed on open.
        std::fs::write(dir.path().join(".REGISTRY.json.tmp"), b"{").unwrap();
        Registry::open(dir.path()).unwrap();
        assert!(!dir.path().join(".REGISTRY.json.tmp").exists());
    }

    #[test]
    fn operator_changes_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let a = file();
        let mut b = a.clone();
        b.version = "v000002".into();
        b.parent = Some("v000001".into());
        let b = b.sealed();
        reg.publish(&a).unwrap();
        reg.publish(&b).unwrap();
        ops::promote(&reg, "v000001", "first").unwrap();
        ops::promote(&reg, "v000002", "second").unwrap();
        assert_eq!(ops::rollback(&reg, "bad").unwrap(), "v000001");
        let f = reg.read().unwrap();
        assert_eq!(f.champion.as_deref(), Some("v000001"));
        assert_eq!(f.history.len(), 3);
        // Rolling back again steps further back (nothing left), not back to v000002.
        assert!(ops::rollback(&reg, "again").is_err());
        assert!(f.history.iter().all(|h| h.by == "operator"));
        assert!(ops::promote(&reg, "v000009", "x").is_err());
        assert!(f.paused, "a rollback pauses updates");
        assert!(ops::resume(&reg, "x").unwrap());
        assert!(!ops::resume(&reg, "x").unwrap(), "was not paused");
        assert!(ops::pause(&reg, "y").unwrap());
        // Each change is queued for the learner of the next job, marked as applied already.
        let mut queued = Vec::new();
        crate::control::Reader::new(dir.path(), None).poll(0, &mut queued);
        let queued: Vec<(crate::control::Command, Option<String>, bool)> = queued
            .into_iter()
            .map(|(c, _)| c.unwrap())
            .map(|c| (c.command, c.version, c.offline))
            .collect();
        use crate::control::Command::*;
        let v = |s: &str| Some(s.to_string());
        assert_eq!(
            queued,
            [
                (Promote, v("v000001"), true),
                (Promote, v("v000002"), true),
                (Rollback, v("v000001"), true),
                (Resume, None, true),
                (Pause, None, true)
            ]
        );
        let listed = ops::list(&reg).unwrap();
        assert!(
            listed.contains("v000001") && listed.contains("champion"),
            "{listed}"
        );
        let d = ops::diff(&reg, "v000001", "v000002").unwrap();
        assert!(d.contains("parameter distance 0.000000"), "{d}");
    }
}
