//! The learner: prequential scoring, minibatch updates, publication, canary gate, rollback and
//! poisoning defences, as a deterministic state machine over ordered examples.
//!
//! Each timestamp's new examples arrive sorted by event id and are cut into minibatches. For a
//! minibatch: every example is scored by the online model and the champion before anything
//! learns from it (prequential); examples over their entity's cap or far outside what the model
//! has seen are quarantined; the rest make one step. After `publish_every` learned examples the
//! online model is published as a version and passes the canary gate or is blocked. When the
//! champion's quality over the canary window breaches the rollback threshold, the previous
//! champion is restored and updates pause until resumed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::model::{shard_of, BatchExample, FeatureSpec, Input, Model, Scratch};
use super::spec::{DriftAction, LearnSpec};
use crate::control::{Command, Control};
use crate::dataflow::ordered::Snapshot;
use crate::dataflow::quality::logloss_nano;
use crate::drift::detectors::{Detector, Signal};
use crate::records::{to_micro, Event, Text, MICRO};
use crate::registry::{Lineage, VersionFile, VersionMetrics};

/// Score bins of the gate's score-distribution check.
const SCORE_BINS: usize = 10;

/// One labeled example, in learning order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Example {
    /// The event, shared with the join's outputs (not copied).
    pub event: Arc<Event>,
    /// The label.
    pub label: u8,
}

/// Integer aggregates of the canary window, comparable and exact.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowStats {
    /// Examples in the window.
    pub n: u64,
    /// Sum of the online model's log-losses, 1e-9 units.
    pub online_loss_nano: i64,
    /// Examples the online model classified correctly.
    pub online_correct: u64,
    /// Examples the champion scored.
    pub champion_n: u64,
    /// Sum of the champion's log-losses over them.
    pub champion_loss_nano: i64,
    /// Of which classified correctly.
    pub champion_correct: u64,
}

impl WindowStats {
    /// Mean online log-loss.
    pub fn online_loss(&self) -> Option<f64> {
        (self.n > 0).then(|| self.online_loss_nano as f64 / 1e9 / self.n as f64)
    }
    /// Online accuracy.
    pub fn online_accuracy(&self) -> Option<f64> {
        (self.n > 0).then(|| self.online_correct as f64 / self.n as f64)
    }
    /// Mean champion log-loss.
    pub fn champion_loss(&self) -> Option<f64> {
        (self.champion_n > 0).then(|| self.champion_loss_nano as f64 / 1e9 / self.champion_n as f64)
    }
    /// Champion accuracy.
    pub fn champion_accuracy(&self) -> Option<f64> {
        (self.champion_n > 0).then(|| self.champion_correct as f64 / self.champion_n as f64)
    }
}

/// A published version, as an output row (the parameters go to the registry).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionRow {
    /// Version name.
    pub version: String,
    /// Its parent.
    pub parent: Option<String>,
    /// First timestamp of its examples.
    pub trained_from_ts: u64,
    /// Last timestamp of its examples.
    pub trained_through_ts: u64,
    /// Examples learned.
    pub examples: u64,
    /// The version file's checksum.
    pub checksum: String,
    /// Weight norm, as f64 bits.
    pub norm_bits: u64,
    /// The canary window when published.
    pub window: WindowStats,
}

/// What a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A version became champion.
    Promote,
    /// A version failed the gate and stays challenger.
    Block,
    /// The champion was replaced by the previous one; updates paused.
    Rollback,
    /// Updates paused (the champion breached, no previous champion to restore).
    Pause,
    /// Updates resumed.
    Resume,
    /// A step would have made a parameter non-finite; it was not applied.
    UpdateFailed,
    /// A drift detector fired: the learning rate was boosted.
    RateBoost,
    /// A drift detector fired: the schedule restarted.
    RateReset,
    /// An operator's command could not be applied (the reason says why).
    Refuse,
}

/// Who made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum By {
    /// The learner, by its rules.
    Job,
    /// An operator, by the command with this number.
    Operator(u64),
}

impl Action {
    /// Its name in outputs and the registry history.
    pub fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Block => "block",
            Action::Rollback => "rollback",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::UpdateFailed => "update_failed",
            Action::RateBoost => "rate_boost",
            Action::RateReset => "rate_reset",
            Action::Refuse => "refuse",
        }
    }
}

/// A decision of the learner, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DecisionRow {
    /// Decisions are numbered from 1 in the order made.
    pub seq: u64,
    /// What was done.
    pub action: Action,
    /// The version concerned.
    pub version: Option<String>,
    /// The champion after the decision.
    pub champion: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// The canary window at the decision.
    pub window: WindowStats,
    /// PSI of the two models' scores over the window, as f64 bits, when compared.
    pub psi_bits: Option<u64>,
    /// Who decided.
    pub by: By,
}

/// A record kept out of learning.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuarantineRow {
    /// The event id.
    pub event_id: String,
    /// Its entity.
    pub entity: String,
    /// Its event time.
    pub event_time: u64,
    /// Why.
    pub reason: String,
}

/// What one timestamp's examples produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// The online model's prequential score of an example: its event and the score in
    /// micro-units.
    Score(Arc<Event>, i64),
    /// An example kept out of learning.
    Quarantine(QuarantineRow),
    /// A published version and its file.
    Version(VersionRow, Box<VersionFile>),
    /// A decision.
    Decision(DecisionRow),
}

/// Per-example observations of the canary window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Obs {
    online_loss: i64,
    online_ok: bool,
    online_bin: u8,
    champion: Option<(i64, bool, u8)>,
}

/// The last N examples' observations with their sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Window {
    obs: VecDeque<Obs>,
    stats: WindowStats,
    online_bins: [u64; SCORE_BINS],
    champion_bins: [u64; SCORE_BINS],
}

impl Window {
    fn apply(&mut self, o: &Obs, sign: i64) {
        let s = &mut self.stats;
        let u = |x: &mut u64, b: bool| *x = (*x as i64 + sign * b as i64) as u64;
        u(&mut s.n, true);
        s.online_loss_nano += sign * o.online_loss;
        u(&mut s.online_correct, o.online_ok);
        self.online_bins[o.online_bin as usize] =
            (self.online_bins[o.online_bin as usize] as i64 + sign) as u64;
        if let Some((loss, ok, bin)) = o.champion {
            u(&mut s.champion_n, true);
            s.champion_loss_nano += sign * loss;
            u(&mut s.champion_correct, ok);
            self.champion_bins[bin as usize] =
                (self.champion_bins[bin as usize] as i64 + sign) as u64;
        }
    }

    fn push(&mut self, o: Obs, cap: usize) {
        self.apply(&o, 1);
        self.obs.push_back(o);
        while self.obs.len() > cap {
            let old = self.obs.pop_front().expect("non-empty");
            self.apply(&old, -1);
        }
    }
}

/// A held-out example: what the gate scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Held {
    numeric: crate::records::Numbers,
    categorical: crate::records::Categories,
    label: u8,
}

/// A prequential score given at timestamp `ts`; serialized as a compact array, since a
/// snapshot holds one per event still in the dataflow's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "(u64, Text, u64, i64)", from = "(u64, Text, u64, i64)")]
pub struct ScoreEntry {
    /// When it was given.
    pub ts: u64,
    /// The event.
    pub event_id: Text,
    /// Its event time.
    pub event_time: u64,
    /// The score, micro-units.
    pub score: i64,
}

impl From<ScoreEntry> for (u64, Text, u64, i64) {
    fn from(s: ScoreEntry) -> Self {
        (s.ts, s.event_id, s.event_time, s.score)
    }
}

impl From<(u64, Text, u64, i64)> for ScoreEntry {
    fn from((ts, event_id, event_time, score): (u64, Text, u64, i64)) -> Self {
        ScoreEntry {
            ts,
            event_id,
            event_time,
            score,
        }
    }
}

/// Earlier champions kept for rollback.
const PREVIOUS_KEPT: usize = 4;

/// A champion: its version and model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Champion {
    version: String,
    model: Model,
}

/// The learner's whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnerState {
    online: Model,
    champion: Option<Champion>,
    previous: Vec<Champion>,
    paused: bool,
    published: u64,
    last_version: Option<String>,
    since_publish: u64,
    trained_from: Option<u64>,
    trained_through: u64,
    decisions: u64,
    window: Window,
    /// The last `canary.window` held-out examples.
    holdout: VecDeque<Held>,
    detector: Option<Detector>,
    boost_left: u64,
    /// Prequential scores given, oldest first, kept until their event leaves the dataflow's
    /// state: a restart re-emits them, since the quality and shadow state joins them.
    scores: VecDeque<ScoreEntry>,
    /// Examples learned per entity window start and entity.
    caps: BTreeMap<u64, BTreeMap<String, u32>>,
}

impl LearnerState {
    /// Updates are paused (after a rollback, until resumed).
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The online model.
    pub fn online(&self) -> &Model {
        &self.online
    }

    /// Decisions made so far (the last one's sequence number).
    pub fn decisions(&self) -> u64 {
        self.decisions
    }
}

/// The learner: its configuration and state.
#[derive(Debug)]
pub struct Learner {
    spec: LearnSpec,
    job: String,
    fingerprint: String,
    threshold: i64,
    /// How long after its event time an example can still arrive (entity caps are pruned then).
    ttl: u64,
    /// The state, snapshotted with the replay buffer.
    pub state: LearnerState,
    scratch: Scratch,
    /// Scores given since the state began (restored ones included): the log's next index.
    scored: u64,
    /// The score log's JSON, kept between snapshots.
    score_text: ScoreText,
}

/// The JSON text of the live part of the score log, one entry per score, so that a snapshot
/// serializes only the scores given since the last one: the log holds every score whose event
/// is still in the dataflow's state (minutes of them), and re-serializing it whole at every
/// segment boundary was most of the learner's time.
///
/// The text is cut into chunks where an entry's text hashes to a multiple of
/// [`CHUNK_ENTRIES`] (content-defined, so the cuts are the same after a restart, whatever was
/// cached). Sealed chunks are shared by every snapshot that holds them, and the state file's
/// writer compresses each once (see `replay::recorder`).
#[derive(Debug)]
struct ScoreText {
    /// Entries per chunk, on average.
    chunk: u64,
    /// Sealed chunks of `,entry` text, oldest first, with their entries' byte lengths.
    chunks: VecDeque<(bytes::Bytes, Vec<u32>)>,
    /// The text after the sealed chunks, with its entries' byte lengths.
    open: (Vec<u8>, Vec<u32>),
    /// The log index of the first entry held.
    first: u64,
    /// Entries at the front (of the first chunk, or of `open`) no longer live.
    skip: usize,
}

/// Score-log entries per chunk of [`ScoreText`], on average.
const CHUNK_ENTRIES: u64 = 2048;

/// A fixed hash of a score entry's numbers (splitmix64's finalizer), the same on every machine:
/// where its text may end a chunk. (Hashing the entry's text byte by byte was a tenth of the
/// learner's time.)
fn cut_key(e: &ScoreEntry) -> u64 {
    let mut z = e.ts ^ e.event_time.rotate_left(24) ^ (e.score as u64).rotate_left(48);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Appends `,[ts,"event_id",event_time,score]`: exactly serde_json's text of the entry, without
/// converting (and so copying) it first.
fn write_entry(e: &ScoreEntry, out: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b",[");
    out.extend_from_slice(n.format(e.ts).as_bytes());
    out.push(b',');
    serde_json::to_writer(&mut *out, e.event_id.as_str()).expect("a string serializes");
    out.push(b',');
    out.extend_from_slice(n.format(e.event_time).as_bytes());
    out.push(b',');
    out.extend_from_slice(n.format(e.score).as_bytes());
    out.push(b']');
}

impl Default for ScoreText {
    fn default() -> Self {
        ScoreText::new(CHUNK_ENTRIES)
    }
}

impl ScoreText {
    /// Empty, cut into chunks of `chunk` entries on average.
    fn new(chunk: u64) -> ScoreText {
        ScoreText {
            chunk,
            chunks: VecDeque::new(),
            open: Default::default(),
            first: 0,
            skip: 0,
        }
    }

    /// Entries held, the dead ones at the front included.
    fn held(&self) -> u64 {
        self.chunks.iter().map(|c| c.1.len() as u64).sum::<u64>() + self.open.1.len() as u64
    }

    /// Forgets the entries before log index `live`.
    fn drop_before(&mut self, live: u64) {
        if self.first + self.held() < live {
            *self = ScoreText {
                first: live,
                ..ScoreText::new(self.chunk)
            };
            return;
        }
        while let Some((_, lens)) = self.chunks.front() {
            if self.first + lens.len() as u64 > live {
                break;
            }
            self.first += lens.len() as u64;
            self.chunks.pop_front();
        }
        self.skip = (live - self.first) as usize;
    }

    /// Appends one entry's text (`,entry`), sealing the open chunk first at a cut (where the
    /// entry's `key` is a multiple of the chunk length).
    fn push(&mut self, text: &[u8], key: u64) {
        if key.is_multiple_of(self.chunk) && !self.open.1.is_empty() {
            let (t, lens) = std::mem::take(&mut self.open);
            self.chunks.push_back((t.into(), lens));
        }
        self.open.0.extend_from_slice(text);
        self.open.1.push(text.len() as u32);
    }

    /// The live text as shared pieces, without the first entry's leading comma.
    fn pieces(&self, out: &mut Vec<bytes::Bytes>) {
        let open = bytes::Bytes::copy_from_slice(&self.open.0);
        let all = self
            .chunks
            .iter()
            .map(|(t, lens)| (t.clone(), lens.as_slice()))
            .chain(std::iter::once((open, self.open.1.as_slice())));
        for (i, (text, lens)) in all.enumerate() {
            let from = if i == 0 {
                match lens.get(self.skip..).filter(|l| !l.is_empty()) {
                    Some(_) => lens[..self.skip].iter().map(|l| *l as usize).sum::<usize>() + 1,
                    None => continue,
                }
            } else {
                0
            };
            if from < text.len() {
                out.push(text.slice(from..));
            }
        }
    }
}

impl Learner {
    /// A learner with an untrained model, or continuing `state`.
    pub fn new(
        spec: LearnSpec,
        features: FeatureSpec,
        job: &str,
        fingerprint: &str,
        threshold: f64,
        ttl: u64,
        state: Option<LearnerState>,
    ) -> Learner {
        let state = state.unwrap_or_else(|| LearnerState {
            online: Model::new(spec.loss, features),
            champion: None,
            previous: Vec::new(),
            paused: false,
            published: 0,
            last_version: None,
            since_publish: 0,
            trained_from: None,
            trained_through: 0,
            decisions: 0,
            window: Window::default(),
            holdout: VecDeque::new(),
            scores: VecDeque::new(),
            detector: spec.on_drift.as_ref().map(|d| Detector::new(&d.detector)),
            boost_left: 0,
            caps: BTreeMap::new(),
        });
        Learner {
            spec,
            job: job.to_string(),
            fingerprint: fingerprint.to_string(),
            threshold: to_micro(threshold),
            ttl,
            scored: state.scores.len() as u64,
            score_text: ScoreText::default(),
            state,
            scratch: Scratch::default(),
        }
    }

    /// The state as JSON: exactly `serde_json::to_vec(&self.state)`, with the score log's
    /// text shared with earlier snapshots.
    pub fn snapshot(&mut self) -> Snapshot {
        let live = self.state.scores.len() as u64;
        let first = self.scored - live;
        let c = &mut self.score_text;
        c.drop_before(first);
        let held = c.first + c.held();
        let mut text = Vec::new();
        for e in self.state.scores.range((held - first) as usize..) {
            text.clear();
            write_entry(e, &mut text);
            c.push(&text, cut_key(e));
        }
        let scores = std::mem::take(&mut self.state.scores);
        let head = serde_json::to_vec(&self.state).expect("learner state serializes");
        self.state.scores = scores;
        // The last `"scores":[]` is the state's own (emptied) field: only `caps` follows it,
        // whose keys are escaped strings and whose values are maps.
        const EMPTY: &[u8] = b"\"scores\":[]";
        let at = head
            .windows(EMPTY.len())
            .rposition(|w| w == EMPTY)
            .expect("the state has a score log")
            + EMPTY.len()
            - 1;
        let head = bytes::Bytes::from(head);
        let mut parts = vec![head.slice(..at)];
        self.score_text.pieces(&mut parts);
        parts.push(head.slice(at..));
        Snapshot(parts)
    }

    /// The online model.
    pub fn online(&self) -> &Model {
        &self.state.online
    }

    /// Updates are paused.
    pub fn paused(&self) -> bool {
        self.state.paused
    }

    /// The scores given before a restart that the dataflow downstream still holds.
    pub fn live_scores(&self) -> impl Iterator<Item = &ScoreEntry> {
        self.state.scores.iter()
    }

    /// Processes the new examples of timestamp `ts`, sorted by event id.
    pub fn step(&mut self, ts: u64, examples: &[Example], out: &mut Vec<Out>) {
        let ttl = self.ttl;
        while let Some(s) = self.state.scores.front() {
            if s.event_time.saturating_add(ttl) > ts {
                break;
            }
            self.state.scores.pop_front();
        }
        let w = self.spec.defence.entity_window_ms;
        let horizon = ts.saturating_sub(self.ttl.saturating_add(w));
        self.state.caps.retain(|start, _| *start >= horizon);
        for chunk in examples.chunks(self.spec.batch_size.max(1)) {
            self.batch(ts, chunk, out);
        }
    }

    /// Applies an operator's command: always exactly one decision, by the operator, naming
    /// the command (a command that cannot be applied is refused, with the reason).
    pub fn control(&mut self, c: &Control, out: &mut Vec<Out>) {
        let by = By::Operator(c.seq);
        let said = if c.offline {
            format!("{} (applied to the registry while no job ran)", c.reason)
        } else {
            c.reason.clone()
        };
        let (action, version, what) = match c.command {
            Command::Pause | Command::Resume => {
                let pause = c.command == Command::Pause;
                let was = std::mem::replace(&mut self.state.paused, pause);
                let what = match (pause, was == pause) {
                    (true, false) => "updates paused",
                    (true, true) => "updates were already paused",
                    (false, false) => "updates resumed",
                    (false, true) => "updates were not paused",
                };
                let action = if pause { Action::Pause } else { Action::Resume };
                (action, None, what.to_string())
            }
            Command::Promote => match self.operator_model(c) {
                Err(why) => (Action::Refuse, c.version.clone(), why),
                Ok(champion) => {
                    let v = champion.version.clone();
                    let what = if self.champion_is(&v) {
                        format!("{v} was already the champion")
                    } else {
                        let st = &mut self.state;
                        if let Some(old) = st.champion.replace(champion) {
                            st.previous.push(old);
                            if st.previous.len() > PREVIOUS_KEPT {
                                st.previous.remove(0);
                            }
                        }
                        // The window compared the old champion: the new one starts afresh.
                        st.window = Window::default();
                        format!("{v} promoted")
                    };
                    (Action::Promote, Some(v), what)
                }
            },
            Command::Rollback => {
                let target = match &c.version {
                    // Offline: the registry chose the version; the learner follows it.
                    Some(_) => self.operator_model(c).map(Some),
                    None => Ok(None),
                };
                let st = &mut self.state;
                let restored = match target {
                    Err(why) => Err(why),
                    Ok(Some(t)) => {
                        // Earlier champions from the target on are behind us now.
                        if let Some(i) = st.previous.iter().rposition(|p| p.version == t.version) {
                            st.previous.truncate(i);
                        }
                        Ok(t)
                    }
                    Ok(None) => st
                        .previous
                        .pop()
                        .ok_or_else(|| "no earlier champion to roll back to".to_string()),
                };
                match restored {
                    Err(why) => (Action::Refuse, c.version.clone(), why),
                    Ok(prev) => {
                        let v = prev.version.clone();
                        let bad = st.champion.replace(prev).map(|c| c.version);
                        st.paused = true;
                        st.window = Window::default();
                        (
                            Action::Rollback,
                            bad,
                            format!("restored {v}, updates paused until resumed"),
                        )
                    }
                }
            }
        };
        let reason = match action {
            Action::Refuse => format!("{} refused: {what} ({said})", c.command.name()),
            _ => format!("{what} ({said})"),
        };
        self.decide_by(action, version, reason, None, by, out);
    }

    fn champion_is(&self, version: &str) -> bool {
        self.state
            .champion
            .as_ref()
            .is_some_and(|c| c.version == version)
    }

    /// The champion a command names, checked: its file whole, its features the learner's.
    fn operator_model(&self, c: &Control) -> Result<Champion, String> {
        let v = c.version.as_deref().unwrap_or_default();
        let text = c
            .model
            .as_deref()
            .ok_or_else(|| format!("the command carries no file of {v}"))?;
        let file: VersionFile = serde_json::from_str(text)
            .map_err(|e| format!("the file of {v} it carries is unreadable: {e}"))?;
        if file.version != v || file.checksum != file.compute_checksum() {
            return Err(format!("the file of {v} it carries fails its checksum"));
        }
        if file.job != self.job {
            return Err(format!(
                "{v} was trained by job {:?}, not this one",
                file.job
            ));
        }
        let online = &self.state.online;
        if file.model.features != online.features || file.model.loss != online.loss {
            return Err(format!(
                "{v} reads other features or has another loss than this job's model"
            ));
        }
        Ok(Champion {
            version: file.version,
            model: file.model,
        })
    }

    fn decide(
        &mut self,
        action: Action,
        version: Option<String>,
        reason: String,
        psi: Option<f64>,
        out: &mut Vec<Out>,
    ) {
        self.decide_by(action, version, reason, psi, By::Job, out);
    }

    fn decide_by(
        &mut self,
        action: Action,
        version: Option<String>,
        reason: String,
        psi: Option<f64>,
        by: By,
        out: &mut Vec<Out>,
    ) {
        self.state.decisions += 1;
        out.push(Out::Decision(DecisionRow {
            seq: self.state.decisions,
            action,
            version,
            champion: self.state.champion.as_ref().map(|c| c.version.clone()),
            reason,
            window: self.state.window.stats.clone(),
            psi_bits: psi.map(f64::to_bits),
            by,
        }));
    }

    fn batch(&mut self, ts: u64, chunk: &[Example], out: &mut Vec<Out>) {
        let spec = &self.spec;
        let st = &mut self.state;
        let mut learn: Vec<BatchExample> = Vec::with_capacity(chunk.len());
        let mut drifted = None;
        for Example { event: ex, label } in chunk {
            let label = *label;
            let input = Input {
                numeric: &ex.numeric,
                categorical: &ex.categorical,
            };
            let x = st.online.encode(&input);
            let score = to_micro(st.online.predict(&x)).clamp(0, MICRO);
            out.push(Out::Score(ex.clone(), score));
            self.scored += 1;
            st.scores.push_back(ScoreEntry {
                ts,
                event_id: ex.id.clone(),
                event_time: ex.time,
                score,
            });
            let ok = |s: i64| (s >= self.threshold) as u8 == label;
            let champion = st.champion.as_ref().map(|c| {
                let s = to_micro(c.model.predict(&c.model.encode(&input))).clamp(0, MICRO);
                (logloss_nano(s, label), ok(s), bin(s))
            });
            st.window.push(
                Obs {
                    online_loss: logloss_nano(score, label),
                    online_ok: ok(score),
                    online_bin: bin(score),
                    champion,
                },
                spec.canary.window,
            );
            if let Some(det) = st.detector.as_mut() {
                if det.update((!ok(score)) as u8 as f64) == Signal::Drift && drifted.is_none() {
                    drifted = Some(det.detail());
                }
            }
            if is_held_out(&ex.id, spec.canary.holdout) {
                st.holdout.push_back(Held {
                    numeric: ex.numeric.clone(),
                    categorical: ex.categorical.clone(),
                    label,
                });
                if st.holdout.len() > spec.canary.window {
                    st.holdout.pop_front();
                }
                continue;
            }
            if st.paused {
                continue;
            }
            if let Some(cap) = spec.defence.entity_cap {
                let w = spec.defence.entity_window_ms;
                let per = st.caps.entry(ex.time - ex.time % w).or_default();
                let n = match per.get_mut(ex.entity.as_str()) {
                    Some(n) => n,
                    None => per.entry(ex.entity.to_string()).or_insert(0),
                };
                if *n >= cap {
                    out.push(Out::Quarantine(QuarantineRow {
                        event_id: ex.id.to_string(),
                        entity: ex.entity.to_string(),
                        event_time: ex.time,
                        reason: format!("entity_cap: {cap} examples of this entity per {w} ms"),
                    }));
                    continue;
                }
                *n += 1;
            }
            if let Some(k) = spec.defence.outlier_z {
                let numeric = &st.online.features.numeric;
                let far = if st.online.examples >= spec.defence.warmup {
                    numeric.iter().enumerate().find_map(|(i, (name, at))| {
                        let v = ex.numeric.get(*at).copied().flatten()?;
                        let z = st.online.scaler.z(i, crate::records::from_micro(v));
                        (z.abs() > k).then(|| format!("outlier: {name} is {z:.1} sd from the mean"))
                    })
                } else {
                    None
                };
                if let Some(reason) = far {
                    out.push(Out::Quarantine(QuarantineRow {
                        event_id: ex.id.to_string(),
                        entity: ex.entity.to_string(),
                        event_time: ex.time,
                        reason,
                    }));
                    continue;
                }
            }
            learn.push(BatchExample {
                shard: shard_of(&ex.id, spec.shards),
                x,
                input,
                y: label as f64,
            });
        }
        if !st.paused && !learn.is_empty() {
            let factor = match (&spec.on_drift, st.boost_left) {
                (Some(d), n) if n > 0 && d.action == DriftAction::Boost => d.factor,
                _ => 1.0,
            };
            let n = learn.len() as u64;
            if st.online.step(spec, factor, &learn, &mut self.scratch) {
                st.boost_left = st.boost_left.saturating_sub(n);
                st.since_publish += n;
                st.trained_from.get_or_insert(ts);
                st.trained_through = ts;
            } else {
                let reason = format!(
                    "a step over {n} examples would make a parameter non-finite; not applied"
                );
                self.decide(Action::UpdateFailed, None, reason, None, out);
            }
        }
        if let Some(detail) = drifted {
            self.on_drift(detail, out);
        }
        if !self.state.paused && self.state.since_publish >= self.spec.publish_every {
            self.publish(ts, out);
        }
        self.check_rollback(out);
    }

    fn on_drift(&mut self, detail: String, out: &mut Vec<Out>) {
        let Some(d) = self.spec.on_drift.clone() else {
            return;
        };
        if self.state.paused {
            return;
        }
        match d.action {
            DriftAction::Boost => {
                self.state.boost_left = d.examples;
                let reason = format!(
                    "drift detected on the online model's errors ({detail}): rate x{} for {} examples",
                    d.factor, d.examples
                );
                self.decide(Action::RateBoost, None, reason, None, out);
            }
            DriftAction::Reset => {
                self.state.online.reset_schedule();
                let reason = format!(
                    "drift detected on the online model's errors ({detail}): schedule restarted"
                );
                self.decide(Action::RateReset, None, reason, None, out);
            }
        }
    }

    fn publish(&mut self, ts: u64, out: &mut Vec<Out>) {
        let st = &mut self.state;
        st.published += 1;
        st.since_publish = 0;
        let version = format!("v{:06}", st.published);
        let stats = st.window.stats.clone();
        let from = st.trained_from.unwrap_or(ts);
        let file = VersionFile {
            version: version.clone(),
            parent: st.last_version.replace(version.clone()),
            job: self.job.clone(),
            model: st.online.clone(),
            trained_from_ts: from,
            trained_through_ts: st.trained_through,
            examples: st.online.examples,
            metrics: VersionMetrics {
                window_examples: stats.n,
                log_loss: stats.online_loss(),
                accuracy: stats.online_accuracy(),
            },
            lineage: Lineage {
                job_fingerprint: self.fingerprint.clone(),
                from_ts: from,
                to_ts: ts + 1,
            },
            hyperparameters: Some(self.spec.hyperparameters()),
            checksum: String::new(),
        }
        .sealed();
        let norm = st.online.norm();
        out.push(Out::Version(
            VersionRow {
                version: version.clone(),
                parent: file.parent.clone(),
                trained_from_ts: from,
                trained_through_ts: st.trained_through,
                examples: st.online.examples,
                checksum: file.checksum.clone(),
                norm_bits: norm.to_bits(),
                window: stats.clone(),
            },
            Box::new(file),
        ));
        let (verdict, psi) = self.gate(norm);
        match verdict {
            Ok(reason) => {
                let st = &mut self.state;
                let new = Champion {
                    version: version.clone(),
                    model: st.online.clone(),
                };
                if let Some(old) = st.champion.replace(new) {
                    st.previous.push(old);
                    if st.previous.len() > PREVIOUS_KEPT {
                        st.previous.remove(0);
                    }
                }
                self.decide(Action::Promote, Some(version), reason, psi, out);
                // The window compared the old champion: the new one starts afresh.
                self.state.window = Window::default();
            }
            Err(reason) => self.decide(Action::Block, Some(version), reason, psi, out),
        }
    }

    /// The canary gate's verdict on the online model: `Ok(reason)` promotes.
    fn gate(&self, norm: f64) -> (Result<String, String>, Option<f64>) {
        let c = &self.spec.canary;
        let st = &self.state;
        if !st.online.finite() {
            return (Err("a parameter is not finite".into()), None);
        }
        if norm > c.max_norm {
            return (
                Err(format!(
                    "weight norm {norm:.3} above the bound {}",
                    c.max_norm
                )),
                None,
            );
        }
        let n = st.holdout.len();
        if n < c.min_examples {
            return (
                Err(format!(
                    "{n} held-out examples to judge it on, the gate needs {}",
                    c.min_examples
                )),
                None,
            );
        }
        let Some(champion) = &st.champion else {
            return (
                Ok(format!(
                    "first champion: sanity checks passed, {n} held-out examples seen, nothing to compare with"
                )),
                None,
            );
        };
        let (mut lc, mut lh) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut bc, mut bh) = ([0u64; SCORE_BINS], [0u64; SCORE_BINS]);
        for h in &st.holdout {
            let input = Input {
                numeric: &h.numeric,
                categorical: &h.categorical,
            };
            let sc =
                to_micro(champion.model.predict(&champion.model.encode(&input))).clamp(0, MICRO);
            let sh = to_micro(st.online.predict(&st.online.encode(&input))).clamp(0, MICRO);
            lc.push(logloss_nano(sc, h.label));
            lh.push(logloss_nano(sh, h.label));
            bc[bin(sc) as usize] += 1;
            bh[bin(sh) as usize] += 1;
        }
        let psi = crate::drift::stats::psi(&bc, &bh);
        let (cl, hl) = (trimmed_mean(&mut lc, c.trim), trimmed_mean(&mut lh, c.trim));
        let what = format!(
            "trimmed log-loss {hl:.5} against champion {} {cl:.5} on {n} held-out examples (trim {}, margin {})",
            champion.version, c.trim, c.max_loss_margin
        );
        if hl > cl + c.max_loss_margin {
            return (Err(what), psi);
        }
        // A score distribution unlike the champion's is suspect, unless the challenger is
        // clearly better on the held-out examples: after a change of concept, the model that
        // relearned it must move its scores.
        let clearly_better = hl + c.max_loss_margin < cl;
        if let Some(p) = psi.filter(|p| *p > c.max_score_psi && !clearly_better) {
            return (
                Err(format!(
                    "score distribution PSI {p:.4} against champion {} on {n} held-out examples, above {} without a clear gain ({what})",
                    champion.version, c.max_score_psi
                )),
                psi,
            );
        }
        (
            Ok(format!("{what}, score PSI {:.4}", psi.unwrap_or(0.0))),
            psi,
        )
    }

    fn check_rollback(&mut self, out: &mut Vec<Out>) {
        let Some(rb) = self.spec.rollback.clone() else {
            return;
        };
        let st = &self.state;
        let Some(champion) = &st.champion else {
            return;
        };
        let s = &st.window.stats;
        if st.paused || (s.champion_n as usize) < rb.min_examples {
            return;
        }
        let breach = match (rb.max_log_loss, rb.min_accuracy) {
            (Some(t), _) if s.champion_loss().is_some_and(|l| l > t) => Some(format!(
                "champion {} log-loss {:.5} over the last {} examples above {t}",
                champion.version,
                s.champion_loss().unwrap_or_default(),
                s.champion_n
            )),
            (_, Some(t)) if s.champion_accuracy().is_some_and(|a| a < t) => Some(format!(
                "champion {} accuracy {:.4} over the last {} examples below {t}",
                champion.version,
                s.champion_accuracy().unwrap_or_default(),
                s.champion_n
            )),
            _ => None,
        };
        let Some(breach) = breach else {
            return;
        };
        let st = &mut self.state;
        st.paused = true;
        match st.previous.pop() {
            Some(prev) => {
                let bad = st.champion.replace(prev).map(|c| c.version);
                let reason = format!(
                    "{breach}: restored {}, updates paused until resumed",
                    st.champion
                        .as_ref()
                        .map(|c| c.version.as_str())
                        .unwrap_or("")
                );
                self.decide(Action::Rollback, bad, reason, None, out);
            }
            None => {
                let v = st.champion.as_ref().map(|c| c.version.clone());
                let reason = format!("{breach}: no previous champion to restore, updates paused");
                self.decide(Action::Pause, v, reason, None, out);
            }
        }
        self.state.window = Window::default();
    }
}

/// An example is held out for the gate, by a stable hash of its event id.
fn is_held_out(event_id: &str, share: f64) -> bool {
    let h = super::model::fnv1a(&[b"holdout", event_id.as_bytes()]);
    (h % 1_000_000) < (share * 1e6).round() as u64
}

/// Mean of the smallest `1 - trim` share of `losses` (nano units), as a float.
fn trimmed_mean(losses: &mut [i64], trim: f64) -> f64 {
    losses.sort_unstable();
    let keep = (losses.len() - (losses.len() as f64 * trim).floor() as usize).max(1);
    losses[..keep].iter().map(|&l| l as i128).sum::<i128>() as f64 / 1e9 / keep as f64
}

fn bin(score: i64) -> u8 {
    ((score as i128 * SCORE_BINS as i128 / MICRO as i128) as usize).min(SCORE_BINS - 1) as u8
}

#[cfg(test)]
mod score_text_tests {
    use super::{write_entry, ScoreEntry, ScoreText};

    /// An entry's text is serde_json's, escapes and negative scores included.
    #[test]
    fn entry_text_is_serde_jsons() {
        for (id, score) in [("ev-1", 0), ("é\"\\\u{1}x", -17), ("", i64::MAX)] {
            let e = ScoreEntry {
                ts: 1_767_225_600_000,
                event_id: id.into(),
                event_time: u64::MAX,
                score,
            };
            let mut want = b",".to_vec();
            serde_json::to_writer(&mut want, &e).unwrap();
            let mut got = Vec::new();
            write_entry(&e, &mut got);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    fn entry(i: u64) -> Vec<u8> {
        format!(",[{i},\"ev{:06}\",{}]", i * 7919 % 1_000_003, i % 97).into_bytes()
    }

    fn key(i: u64) -> u64 {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7
    }

    fn text(pieces: &[bytes::Bytes]) -> Vec<u8> {
        pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }

    /// The live text is exact as entries come and go, and a text rebuilt from the live entries
    /// alone (a restart) cuts its chunks where the long-running one does.
    #[test]
    fn live_text_and_cuts_survive_a_restart() {
        let mut long = ScoreText::new(4);
        let (mut first, mut next) = (0u64, 0u64);
        for step in 0..200u64 {
            for _ in 0..(step * 7 % 11) {
                long.push(&entry(next), key(next));
                next += 1;
            }
            first = (first + step * 5 % 9).min(next);
            long.drop_before(first);
            let mut pieces = Vec::new();
            long.pieces(&mut pieces);
            let mut want: Vec<u8> = (first..next).flat_map(entry).collect();
            if !want.is_empty() {
                want.remove(0);
            }
            assert_eq!(text(&pieces), want, "step {step}");
            let mut restarted = ScoreText::new(4);
            restarted.drop_before(first);
            for i in first..next {
                restarted.push(&entry(i), key(i));
            }
            let mut again = Vec::new();
            restarted.pieces(&mut again);
            let lens = |p: &[bytes::Bytes]| p.iter().map(|b| b.len()).collect::<Vec<_>>();
            assert_eq!(lens(&again), lens(&pieces), "step {step}");
        }
        assert!(long.chunks.len() > 3);
    }
}
