//! Operator commands to a running job: control records, and the directory they travel through.
//!
//! `tidemark models pause|resume|promote|rollback` writes a command file into the registry's
//! `control/` directory, numbered after every earlier one (`<seq>.json`, claimed with a hard
//! link, so two operators never share a number). The job that holds the registry reads the
//! directory on worker 0, stamps each command at its source's current timestamp, records it in
//! the replay buffer (stream `controls`) and hands it to the learner, which applies it at that
//! timestamp and makes a decision `by: operator` that names the command. The command waits for
//! that decision in the registry's history. A replay feeds the recorded commands back at their
//! stamps; a restart re-reads the files its last commit did not cover. Once a commit covers a
//! command, its file is removed and `CONSUMED` holds its number, so a later run (even into a
//! fresh output directory) never applies it twice.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::records::{excerpt, DeadLetter, Position};
use crate::registry::{HistoryEntry, Registry};

/// The control directory's name inside a registry.
pub const CONTROL_DIR: &str = "control";
/// The file holding the last command number a commit covered.
pub const CONSUMED: &str = "CONSUMED";
/// The partition key of the control directory in a replay manifest.
pub const PARTITION_KEY: &str = "controls";
/// The source name control records carry in their position.
pub const SOURCE: &str = "control";
/// The stream name of control records in dead letters and the buffer.
pub const STREAM: &str = "controls";
/// How often the job looks for new commands.
const POLL: Duration = Duration::from_millis(50);
/// How far beyond a restart's first timestamp a kept stamp may lie (a day of event time).
const STAMP_AHEAD_MS: u64 = 86_400_000;

/// What an operator asks of the learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Stop learning (the champion keeps serving).
    Pause,
    /// Learn again.
    Resume,
    /// Make a version the champion.
    Promote,
    /// Restore the champion before the current one and pause learning.
    Rollback,
}

impl Command {
    /// Its name in files, outputs and the registry history.
    pub fn name(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::Rollback => "rollback",
        }
    }
}

/// One operator command: a file in the control directory, and a record in the job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Its number: commands apply in this order.
    pub seq: u64,
    /// What to do.
    pub command: Command,
    /// The version to promote, or to roll back to (`None`: the champion before the current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why, in the operator's words.
    pub reason: String,
    /// Already applied to the registry while no job ran: the job only brings its learner in
    /// line (the registry history has it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
    /// The version file of `version`, as the job read it from the registry when it took the
    /// command (so that a replay needs no registry). Never in the operator's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The control directory of the registry in `registry`.
pub fn dir(registry: &Path) -> PathBuf {
    registry.join(CONTROL_DIR)
}

fn file_name(seq: u64) -> String {
    format!("{seq:010}.json")
}

/// A version's name: `v` and six digits.
pub fn is_version_name(v: &str) -> bool {
    v.len() == 7 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit())
}

fn stamp_name(seq: u64) -> String {
    format!("{seq:010}.stamp")
}

fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The commands waiting in `dir`, by number (none if it does not exist).
fn waiting(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(seq) = seq_of(&entry.file_name().to_string_lossy()) {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The numbers of the commands no commit has covered yet, oldest first.
pub fn waiting_commands(registry: &Path) -> Result<Vec<u64>> {
    let dir = dir(registry);
    let done = consumed(&dir)?;
    Ok(waiting(&dir)?.into_iter().filter(|s| *s > done).collect())
}

/// The last command number a commit covered (0 if none).
pub fn consumed(dir: &Path) -> Result<u64> {
    let path = dir.join(CONSUMED);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            Error::registry(&path, format!("not a command number: {:?}", excerpt(&text)))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Queues `control` for the job holding the registry in `registry` (or the next one to hold
/// it); returns its number.
pub fn submit(registry: &Path, mut control: Control) -> Result<u64> {
    let dir = dir(registry);
    crate::confine::create_dir(&dir)?;
    control.model = None;
    // Numbers continue past every command the registry's history names too, should the
    // control directory have been lost or cleaned.
    let recorded = Registry::existing(registry)
        .and_then(|r| r.read())
        .map(|f| {
            f.history
                .iter()
                .filter_map(|h| h.command)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    for _ in 0..1000 {
        let last = waiting(&dir)?.last().copied().unwrap_or(0);
        control.seq = last.max(consumed(&dir)?).max(recorded).saturating_add(1);
        let bytes = serde_json::to_vec_pretty(&control).expect("commands serialize");
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            file_name(control.seq),
            std::process::id()
        ));
        {
            use std::io::Write;
            let mut f = crate::confine::create(&tmp)?;
            f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        // A hard link claims the number only if no one else holds it.
        let path = dir.join(file_name(control.seq));
        let linked = std::fs::hard_link(&tmp, &path);
        crate::confine::remove(&tmp)?;
        match linked {
            Ok(()) => {
                crate::replay::segment::sync_dir(&dir)?;
                return Ok(control.seq);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Err(Error::registry(
        &dir,
        "could not claim a command number (1000 tries lost to other writers)",
    ))
}

/// Marks every command up to `upto` as covered by a commit: records the number and removes
/// their files.
pub fn retire(dir: &Path, upto: u64) -> Result<()> {
    if upto == 0 || upto <= consumed(dir)? {
        return Ok(());
    }
    crate::replay::segment::write_atomic(&dir.join(CONSUMED), format!("{upto}\n").as_bytes())?;
    for seq in waiting(dir)?.into_iter().take_while(|s| *s <= upto) {
        crate::confine::remove(&dir.join(file_name(seq)))?;
        crate::confine::remove(&dir.join(stamp_name(seq)))?;
    }
    Ok(())
}

/// The running job's decision on command `seq`, once it made it.
pub fn decision(reg: &Registry, seq: u64) -> Result<Option<HistoryEntry>> {
    let file = reg.read()?;
    Ok(file
        .history
        .into_iter()
        .rev()
        .find(|h| h.command == Some(seq)))
}

/// Takes back command `seq` if no job read it (a job keeps a stamp beside each command it
/// reads); returns whether it was still unread.
pub fn withdraw(registry: &Path, seq: u64) -> Result<bool> {
    let dir = dir(registry);
    if dir.join(stamp_name(seq)).exists() {
        return Ok(false);
    }
    crate::confine::remove(&dir.join(file_name(seq)))
}

/// The job's side: reads new commands from the control directory, in order.
#[derive(Debug)]
pub struct Reader {
    registry: PathBuf,
    dir: PathBuf,
    next: u64,
    polled: Option<Instant>,
    /// A restart: the stamps an earlier run gave are kept (a fresh run's time is another).
    restart: bool,
    /// The stamp of the last command read.
    last: u64,
}

impl Reader {
    /// A reader of the registry in `registry` continuing at a restart's recorded cursor
    /// (`None` at a fresh start), past every command a commit covered.
    pub fn new(registry: &Path, cursor: Option<u64>) -> Reader {
        let dir = dir(registry);
        let next = cursor.unwrap_or(0).max(consumed(&dir).unwrap_or(0) + 1);
        Reader {
            registry: registry.to_path_buf(),
            dir,
            next,
            polled: None,
            restart: cursor.is_some(),
            last: 0,
        }
    }

    /// The next command number to read.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The control directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the commands that arrived since the last call (at most every 50 ms of wall
    /// clock: when a command arrives decides only its stamp, which the buffer records), each
    /// with its stamp: `at`, or the stamp an earlier run gave it (kept beside its file before
    /// it entered that run's dataflow), so that a restart applies a command its last commit did
    /// not cover where the crashed run did; and never below an earlier command's. A command file that cannot be read or checked
    /// becomes a dead letter naming it and the field; the reader moves past it. Returns
    /// whether it looked.
    pub fn poll(
        &mut self,
        at: u64,
        out: &mut Vec<(std::result::Result<Control, DeadLetter>, u64)>,
    ) -> bool {
        let now = Instant::now();
        if self.polled.is_some_and(|p| now.duration_since(p) < POLL) {
            return false;
        }
        self.polled = Some(now);
        let seqs = match waiting(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot read the control directory: {e}");
                return true;
            }
        };
        let from = self.next;
        for seq in seqs.into_iter().filter(|s| *s >= from) {
            let stamp = self.dir.join(stamp_name(seq));
            let earlier = match self.restart {
                true => std::fs::read_to_string(&stamp).ok(),
                false => None,
            };
            // Never before an earlier command: they apply in their order.
            let at = at.max(self.last);
            let ts = match earlier {
                // A stamp further ahead than a crashed run could have been is not ours.
                Some(t) => t
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|t| *t <= at.saturating_add(STAMP_AHEAD_MS))
                    .map_or(at, |t| t.max(at)),
                None => {
                    let written =
                        crate::replay::segment::write_atomic(&stamp, format!("{at}\n").as_bytes());
                    if let Err(e) = written {
                        tracing::warn!("cannot keep the stamp of operator command {seq}: {e}");
                    }
                    at
                }
            };
            out.push((self.read(seq), ts));
            self.next = seq.saturating_add(1);
            self.last = ts;
        }
        true
    }

    fn read(&self, seq: u64) -> std::result::Result<Control, DeadLetter> {
        let path = self.dir.join(file_name(seq));
        let dead = |field: &str, reason: String, raw: &str| DeadLetter {
            stream: STREAM.into(),
            position: Position {
                source: SOURCE.into(),
                offset: seq,
            },
            field: field.into(),
            reason: format!("{}: {reason}", path.display()),
            raw: excerpt(raw),
        };
        crate::confine::not_link(&path).map_err(|e| dead("", e.to_string(), ""))?;
        let text = std::fs::read_to_string(&path).map_err(|e| dead("", e.to_string(), ""))?;
        let mut c: Control = serde_json::from_str(&text)
            .map_err(|e| dead("", format!("not a command: {e}"), &text))?;
        if c.seq != seq {
            return Err(dead(
                "seq",
                format!("says command {} in the file of command {seq}", c.seq),
                &text,
            ));
        }
        if c.model.is_some() {
            return Err(dead(
                "model",
                "a command names a version; the job reads its file from the registry".into(),
                &text,
            ));
        }
        match (c.command, &c.version) {
            (Command::Promote, None) => {
                return Err(dead("version", "promote names no version".into(), &text))
            }
            (Command::Pause | Command::Resume, Some(_)) => {
                return Err(dead(
                    "version",
                    format!("{} takes no version", c.command.name()),
                    &text,
                ))
            }
            _ => {}
        }
        if let Some(v) = &c.version {
            if !is_version_name(v) {
                return Err(dead(
                    "version",
                    format!("{:?} is not a version name (v and six digits)", excerpt(v)),
                    &text,
                ));
            }
            let reg = Registry::existing(&self.registry)
                .map_err(|e| dead("version", e.to_string(), &text))?;
            let file = reg
                .version(v)
                .map_err(|e| dead("version", e.to_string(), &text))?;
            c.model = Some(serde_json::to_string(&file).expect("version files serialize"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(reason: &str) -> Control {
        Control {
            seq: 0,
            command: Command::Pause,
            version: None,
            reason: reason.into(),
            offline: false,
            model: None,
        }
    }

    #[test]
    fn commands_are_numbered_in_order_and_read_once() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = tmp.path();
        std::fs::create_dir_all(reg.join("versions")).unwrap();
        assert_eq!(submit(reg, pause("a")).unwrap(), 1);
        assert_eq!(submit(reg, pause("b")).unwrap(), 2);
        let mut r = Reader::new(reg, None);
        let mut out = Vec::new();
        assert!(r.poll(7, &mut out));
        let got: Vec<_> = out.into_iter().map(|(c, _)| c.unwrap()).collect();
        assert_eq!(
            got.iter()
                .map(|c| (c.seq, c.reason.as_str()))
                .collect::<Vec<_>>(),
            [(1, "a"), (2, "b")]
        );
        assert_eq!(r.next(), 3);
        assert_eq!(waiting_commands(reg).unwrap(), [1, 2]);
        // Retired commands are gone, and numbering continues past them.
        retire(&dir(reg), 2).unwrap();
        assert_eq!(waiting(&dir(reg)).unwrap(), Vec::<u64>::new());
        assert_eq!(waiting_commands(reg).unwrap(), Vec::<u64>::new());
        assert_eq!(submit(reg, pause("c")).unwrap(), 3);
        // A fresh start reads only what no commit covered.
        let mut fresh = Reader::new(reg, None);
        let mut out = Vec::new();
        fresh.poll(20, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.as_ref().unwrap().seq, out[0].1), (3, 20));
        // A restart before a commit covered it takes it at the stamp it was given (not
        // earlier than it can).
        let mut again = Reader::new(reg, Some(0));
        let mut out = Vec::new();
        again.poll(10, &mut out);
        assert_eq!(out[0].1, 20);
        let mut out = Vec::new();
        Reader::new(reg, Some(0)).poll(30, &mut out);
        assert_eq!(out[0].1, 30);
        // A fresh run stamps it anew.
        let mut out = Vec::new();
        Reader::new(reg, None).poll(5, &mut out);
        assert_eq!(out[0].1, 5);
    }

    #[test]
    fn numbers_continue_past_the_history_and_read_commands_are_not_withdrawn() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::open(tmp.path()).unwrap();
        let mut file = reg.read().unwrap();
        file.history.push(HistoryEntry {
            seq: Some(3),
            ts: Some(10),
            action: "pause".into(),
            version: None,
            champion: None,
            reason: String::new(),
            by: "operator".into(),
            command: Some(41),
        });
        reg.write(&file).unwrap();
        // The control directory was lost: numbering does not start over.
        assert_eq!(submit(tmp.path(), pause("a")).unwrap(), 42);
        assert_eq!(submit(tmp.path(), pause("b")).unwrap(), 43);
        let mut out = Vec::new();
        let mut r = Reader::new(tmp.path(), None);
        r.poll(5, &mut out);
        assert_eq!(out.len(), 2);
        // Read by a job (which kept their stamps): no longer the operator's to take back.
        assert!(!withdraw(tmp.path(), 42).unwrap());
        assert!(dir(tmp.path()).join(file_name(42)).exists());
        assert_eq!(submit(tmp.path(), pause("c")).unwrap(), 44);
        assert!(withdraw(tmp.path(), 44).unwrap());
        assert!(!dir(tmp.path()).join(file_name(44)).exists());
    }

    #[test]
    fn a_bad_command_file_is_a_dead_letter_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = tmp.path();
        std::fs::create_dir_all(dir(reg)).unwrap();
        std::fs::write(
            dir(reg).join(file_name(1)),
            "{\"seq\": 1, \"command\": \"explode\"",
        )
        .unwrap();
        let mut c = pause("x");
        c.seq = 2;
        c.command = Command::Promote;
        std::fs::write(dir(reg).join(file_name(2)), serde_json::to_vec(&c).unwrap()).unwrap();
        let mut out = Vec::new();
        Reader::new(reg, None).poll(0, &mut out);
        let d1 = out[0].0.as_ref().unwrap_err();
        assert!(
            d1.reason.contains("0000000001.json") && d1.reason.contains("not a command"),
            "{d1:?}"
        );
        let d2 = out[1].0.as_ref().unwrap_err();
        assert_eq!(d2.field, "version");
        assert_eq!(d2.position.offset, 2);
        // A version that is no version name, and a link in place of a command.
        c.seq = 3;
        c.version = Some("../../etc/passwd".into());
        std::fs::write(dir(reg).join(file_name(3)), serde_json::to_vec(&c).unwrap()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir(reg).join(file_name(4))).unwrap();
        // A kept stamp far beyond where a run could have been is not trusted.
        std::fs::write(dir(reg).join(stamp_name(3)), format!("{}\n", u64::MAX)).unwrap();
        let mut out = Vec::new();
        Reader::new(reg, Some(0)).poll(9, &mut out);
        let (d3, ts3) = (out[2].0.as_ref().unwrap_err(), out[2].1);
        assert!(d3.reason.contains("not a version name"), "{d3:?}");
        assert_eq!(ts3, 9);
        let d4 = out[3].0.as_ref().unwrap_err();
        assert!(d4.reason.contains("link"), "{d4:?}");
    }
}
