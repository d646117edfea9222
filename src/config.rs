//! Job files (`dataflows/*.toml`): parsing, defaults and validation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::generator::GeneratorParams;
use crate::schema::{InputSchema, Stream};

/// A job as written in a TOML file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name, used in operator names and summaries.
    pub name: String,
    /// Directory of schema files, relative to the job file.
    #[serde(default = "default_schemas_dir")]
    pub schemas_dir: PathBuf,
    /// Time model parameters.
    pub time: TimeSpec,
    /// One source per input stream.
    pub sources: SourcesSpec,
    /// Parameters of the built-in generator, for `kind = "generator"` sources.
    #[serde(default)]
    pub generator: GeneratorParams,
    /// Event-time windows that metrics are computed over.
    pub windows: Vec<WindowSpec>,
    /// What to compute per window.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Where results go.
    pub outputs: OutputsSpec,
    /// The replay buffer every accepted record is written to.
    #[serde(default)]
    pub replay: ReplaySpec,
    /// Drift monitoring against a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::drift::spec::DriftSpec>,
    /// Online learning.
    #[serde(default)]
    pub learn: Option<crate::learn::spec::LearnSpec>,
    /// The Kafka cluster that `kind = "kafka"` sources and `[outputs.kafka]` use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<crate::kafka::KafkaSpec>,
    /// Alert rules over final windows' quality and label health.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<crate::alerts::AlertSpec>,
    /// Bounds on distinct values (`[limits]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
}

/// The default segment length, and so commit interval, in timestamp milliseconds.
///
/// A commit costs about the same whatever a segment holds: a Parquet file per stream, a state
/// file with the whole history-dependent state (the learner's live score log is most of it),
/// fsyncs and a manifest entry. A backfill runs a thousand times faster than event time, so at
/// one minute the bench committed 16 times a second, which took a seventh of its wall time (see
/// BENCHMARKS.md, "Sixteenth look"). A restart replays a whole state horizon from the buffer
/// anyway (over an hour in the bench), so rereading 5 minutes past the last commit adds little.
pub const DEFAULT_SEGMENT_MS: u64 = 300_000;

/// The replay buffer (`<outputs.dir>/replay`): segment length and retention.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// Timestamp range of one segment, and so the commit interval. Defaults to 5 min, rounded
    /// up to a multiple of the emit interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_ms: Option<u64>,
    /// Segments older than this (behind the committed timestamp) are deleted. Must cover the
    /// job's state horizon, or a restart could not rebuild state. Unset keeps everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
}

fn default_schemas_dir() -> PathBuf {
    PathBuf::from("../schemas")
}

/// Bounds on distinct keys, so that a flood of distinct values cannot grow state and outputs
/// without bound (values beyond a cap fold into `__other__`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Distinct values of each segment column per pane (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_segment_values: Option<usize>,
    /// Distinct entities per pane in the entity features (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entities: Option<usize>,
}

impl LimitsSpec {
    /// The cap on distinct values of one segment column per pane.
    pub fn segment_values(&self) -> usize {
        self.max_segment_values.unwrap_or(1000)
    }

    /// The cap on distinct entities per pane.
    pub fn entities(&self) -> usize {
        self.max_entities.unwrap_or(10_000)
    }
}

/// Time model parameters, all in milliseconds of event time.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    /// Granularity of timely timestamps.
    pub tick_ms: u64,
    /// How far behind the newest event time a partition's watermark trails.
    pub allowed_disorder_ms: u64,
    /// A partition silent for this long (wall clock) stops holding the watermark back.
    pub idle_timeout_ms: u64,
    /// Records older than the watermark by more than this go to dead letters.
    pub max_lateness_ms: u64,
    /// How long after a window ends labels are still expected; then the window is final.
    pub label_horizon_ms: u64,
    /// How long after a window ends its state is kept; then it is retired.
    pub retention_ms: u64,
    /// How far ahead of its partition's watermark one record may be before the next records
    /// must confirm the jump (default: the larger of 10 × the allowed disorder and one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jump_ms: Option<u64>,
    /// How many following records in a row confirm a jump (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump_confirm_records: Option<u32>,
}

impl TimeSpec {
    /// Records a partition holds back before following a jump further than this.
    pub fn jump_bound(&self) -> crate::sources::stamp::JumpBound {
        crate::sources::stamp::JumpBound {
            max_jump: self
                .max_jump_ms
                .unwrap_or((10 * self.allowed_disorder_ms).max(3_600_000)),
            confirm: self.jump_confirm_records.unwrap_or(16) as usize,
        }
    }
}

// The job fingerprint prints this: the jump keys appear only when set, so jobs without them
// keep the fingerprint their replay buffers and model versions carry.
impl std::fmt::Debug for TimeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("TimeSpec");
        d.field("tick_ms", &self.tick_ms)
            .field("allowed_disorder_ms", &self.allowed_disorder_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .field("max_lateness_ms", &self.max_lateness_ms)
            .field("label_horizon_ms", &self.label_horizon_ms)
            .field("retention_ms", &self.retention_ms);
        if let Some(j) = self.max_jump_ms {
            d.field("max_jump_ms", &j);
        }
        if let Some(c) = self.jump_confirm_records {
            d.field("jump_confirm_records", &c);
        }
        d.finish()
    }
}

/// The source of each input stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSpec {
    /// Feature records.
    pub events: SourceSpec,
    /// Production predictions.
    pub predictions: SourceSpec,
    /// Ground-truth labels.
    pub labels: SourceSpec,
}

impl SourcesSpec {
    /// The source of `stream`.
    pub fn get(&self, stream: Stream) -> &SourceSpec {
        match stream {
            Stream::Events => &self.events,
            Stream::Predictions => &self.predictions,
            Stream::Labels => &self.labels,
        }
    }

    /// The source of `stream`, mutably.
    pub fn get_mut(&mut self, stream: Stream) -> &mut SourceSpec {
        match stream {
            Stream::Events => &mut self.events,
            Stream::Predictions => &mut self.predictions,
            Stream::Labels => &mut self.labels,
        }
    }
}

/// One input source.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Schema id in `schemas_dir`.
    pub schema: String,
    /// Kind of source.
    pub kind: SourceKind,
    /// A file, a directory or a glob (file kinds only), relative to the job file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The topic (Kafka sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// What a record with a field (a JSON key, a Parquet column) its schema does not declare
    /// does: `"ignore"` (the default) or `"dead_letter"`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub extra_fields: crate::schema::ExtraFields,
    /// What a source that refuses everything it reads does: `"stop"` (the default) stops the
    /// job when a partition's first [`ALL_REFUSED_AFTER`] records are all refused, and fails
    /// the run when the stream read records and accepted none; `"continue"` runs on.
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_all_refused: OnAllRefused,
}

// Written out so that a source with the default policies prints (and fingerprints) as it did
// before they existed: replay buffers of earlier runs stay this job's.
impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SourceSpec");
        d.field("schema", &self.schema)
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("topic", &self.topic);
        if !is_default(&self.extra_fields) {
            d.field("extra_fields", &self.extra_fields);
        }
        // `on_all_refused` is left out: it decides whether a run stops, not what any record
        // decodes to, so a buffer written either way is the same job's.
        d.finish()
    }
}

/// How many refused records, with none accepted, stop a partition's job (`on_all_refused`).
pub const ALL_REFUSED_AFTER: u64 = 1000;

/// What a source that refuses everything it reads does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAllRefused {
    /// Stop: the source is misconfigured (a schema that does not fit the data).
    #[default]
    Stop,
    /// Run on, everything refused going to dead letters.
    Continue,
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

/// Kinds of sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The built-in deterministic generator.
    Generator,
    /// JSON Lines files.
    Jsonl,
    /// Parquet files.
    Parquet,
    /// A Kafka topic, JSON payloads.
    Kafka,
}

/// An event-time window family.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Name used in output keys.
    pub name: String,
    /// Tumbling or sliding.
    pub kind: WindowKind,
    /// Window length.
    pub size_ms: u64,
    /// Distance between window starts (sliding only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide_ms: Option<u64>,
}

/// Window kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Non-overlapping windows of `size_ms`.
    Tumbling,
    /// Windows of `size_ms` starting every `slide_ms`.
    Sliding,
}

/// What is computed per window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSpec {
    /// Score at or above which a prediction counts as positive.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Categorical event columns that metrics are sliced by (besides the overall slice).
    #[serde(default)]
    pub segments: Vec<String>,
    /// Numeric event columns aggregated per entity and window.
    #[serde(default)]
    pub entity_features: Vec<String>,
    /// Number of equal-width calibration bins over [0, 1].
    #[serde(default = "default_calibration_bins")]
    pub calibration_bins: u32,
    /// Number of equal-width score bins for the provisional AUC.
    #[serde(default = "default_auc_bins")]
    pub auc_bins: u32,
}

fn default_threshold() -> f64 {
    0.5
}
fn default_calibration_bins() -> u32 {
    10
}
fn default_auc_bins() -> u32 {
    200
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            threshold: default_threshold(),
            segments: Vec::new(),
            entity_features: Vec::new(),
            calibration_bins: default_calibration_bins(),
            auc_bins: default_auc_bins(),
        }
    }
}

/// Where results go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsSpec {
    /// Output directory, relative to the working directory.
    pub dir: PathBuf,
    /// File formats written for every changelog.
    #[serde(default = "default_formats")]
    pub formats: Vec<OutputFormat>,
    /// Print a readable summary on stdout at the end.
    #[serde(default = "default_true")]
    pub summary: bool,
    /// Changes are reported as of the next multiple of this (event time): intermediate values
    /// within one interval are consolidated away. Defaults to the tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit_interval_ms: Option<u64>,
    /// Changelogs also produced to Kafka topics, by output name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<crate::kafka::KafkaOutputs>,
}

impl OutputsSpec {
    /// The emit interval, defaulting to `tick_ms`.
    pub fn emit_interval(&self, tick_ms: u64) -> u64 {
        self.emit_interval_ms.unwrap_or(tick_ms)
    }
}

fn default_formats() -> Vec<OutputFormat> {
    vec![OutputFormat::Jsonl]
}
fn default_true() -> bool {
    true
}

/// Output file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// JSON Lines.
    Jsonl,
    /// Apache Parquet.
    Parquet,
}

/// A job after validation: schemas loaded, paths resolved, numbers checked.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job as written.
    pub spec: JobSpec,
    /// The job file it came from.
    pub file: PathBuf,
    /// Resolved input schemas, indexed by [`Stream::index`].
    pub schemas: [InputSchema; 3],
    /// Resolved input files per stream (empty for generator sources), sorted.
    pub files: [Vec<PathBuf>; 3],
    /// Positions (in the events schema's numeric features) of `metrics.entity_features`.
    pub entity_feature_idx: Vec<usize>,
    /// Positions (in the events schema's categorical features) of `metrics.segments`.
    pub segment_idx: Vec<usize>,
    /// Drift monitoring with its resolved reference, if the job has a `[drift]` section.
    pub drift: Option<std::sync::Arc<crate::drift::Drift>>,
    /// Online learning, if the job has a `[learn]` section.
    pub learn: Option<std::sync::Arc<crate::learn::Learn>>,
    /// Partitions of each stream's Kafka topic, sorted; filled by [`crate::kafka::discover`]
    /// before a run (empty for other sources).
    pub kafka_partitions: [Vec<i32>; 3],
    /// Alert rules: `[[alerts]]`, then `[[drift.alerts]]`.
    pub alerts: std::sync::Arc<Vec<crate::alerts::Rule>>,
}

impl Job {
    /// Reads, parses and validates a job file.
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Job::from_toml(path, &text)
    }

    /// Parses and validates job text that claims to come from `path`.
    pub fn from_toml(path: &Path, text: &str) -> Result<Job> {
        Job::validate(path, Job::parse(path, text)?)
    }

    /// Reads and parses a job file without validating it (to edit it first).
    pub fn read_spec(path: &Path) -> Result<JobSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Job::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<JobSpec> {
        toml::from_str(text).map_err(|e| {
            let key = match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                }
                None => "(document)".to_string(),
            };
            Error::config(path, key, e.message().to_string())
        })
    }

    /// Validates a parsed spec.
    pub fn validate(path: &Path, spec: JobSpec) -> Result<Job> {
        let err = |key: &str, reason: String| Error::config(path, key, reason);
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(err(
                "name",
                "must be non-empty ASCII letters, digits, '_' or '-'".into(),
            ));
        }
        let t = &spec.time;
        if t.tick_ms == 0 {
            return Err(err("time.tick_ms", "must be positive".into()));
        }
        for (key, v) in [
            ("time.allowed_disorder_ms", t.allowed_disorder_ms),
            ("time.max_lateness_ms", t.max_lateness_ms),
            ("time.label_horizon_ms", t.label_horizon_ms),
            ("time.retention_ms", t.retention_ms),
        ] {
            if v % t.tick_ms != 0 {
                return Err(err(
                    key,
                    format!("{v} is not a multiple of time.tick_ms ({})", t.tick_ms),
                ));
            }
        }
        if let Some(l) = &spec.limits {
            for (key, v) in [
                ("limits.max_segment_values", l.max_segment_values),
                ("limits.max_entities", l.max_entities),
            ] {
                if v == Some(0) {
                    return Err(err(key, "must be at least 1".into()));
                }
            }
        }
        if t.max_jump_ms == Some(0) {
            return Err(err(
                "time.max_jump_ms",
                "must be positive (it bounds how far one record may move a watermark)".into(),
            ));
        }
        if t.retention_ms <= t.max_lateness_ms {
            return Err(err(
                "time.retention_ms",
                format!("must exceed time.max_lateness_ms ({}), or accepted late records would land in retired windows", t.max_lateness_ms),
            ));
        }
        if t.retention_ms <= t.label_horizon_ms {
            // Equal would retire windows at the instant they become final: no final value.
            return Err(err(
                "time.retention_ms",
                format!("must exceed time.label_horizon_ms ({})", t.label_horizon_ms),
            ));
        }
        if spec.windows.is_empty() {
            return Err(err("windows", "at least one window is required".into()));
        }
        let mut names = BTreeSet::new();
        for (i, w) in spec.windows.iter().enumerate() {
            let key = |k: &str| format!("windows[{i}].{k}");
            if !names.insert(w.name.clone()) {
                return Err(err(
                    &key("name"),
                    format!("duplicate window name {:?}", w.name),
                ));
            }
            if w.size_ms == 0 || w.size_ms % t.tick_ms != 0 {
                return Err(err(
                    &key("size_ms"),
                    format!(
                        "must be a positive multiple of time.tick_ms ({})",
                        t.tick_ms
                    ),
                ));
            }
            match (w.kind, w.slide_ms) {
                (WindowKind::Tumbling, Some(_)) => {
                    return Err(err(
                        &key("slide_ms"),
                        "only sliding windows have a slide".into(),
                    ))
                }
                (WindowKind::Sliding, None) => {
                    return Err(err(
                        &key("slide_ms"),
                        "sliding windows need slide_ms".into(),
                    ))
                }
                (WindowKind::Sliding, Some(s))
                    if s == 0 || w.size_ms % s != 0 || s % t.tick_ms != 0 =>
                {
                    return Err(err(
                        &key("slide_ms"),
                        "must be a positive multiple of time.tick_ms that divides size_ms".into(),
                    ))
                }
                _ => {}
            }
        }
        let m = &spec.metrics;
        if !(m.threshold > 0.0 && m.threshold < 1.0) {
            return Err(err(
                "metrics.threshold",
                format!("{} is not inside (0, 1)", m.threshold),
            ));
        }
        if !(1..=1000).contains(&m.calibration_bins) {
            return Err(err(
                "metrics.calibration_bins",
                "must be in 1..=1000".into(),
            ));
        }
        if !(2..=10_000).contains(&m.auc_bins) {
            return Err(err("metrics.auc_bins", "must be in 2..=10000".into()));
        }
        if let Some(e) = spec.outputs.emit_interval_ms {
            let key = "outputs.emit_interval_ms";
            if e == 0 || e % t.tick_ms != 0 {
                return Err(err(
                    key,
                    format!(
                        "must be a positive multiple of time.tick_ms ({})",
                        t.tick_ms
                    ),
                ));
            }
            // Window ends, finality and retirement must fall on emit boundaries.
            for w in &spec.windows {
                if w.size_ms % e != 0 || w.slide_ms.unwrap_or(w.size_ms) % e != 0 {
                    return Err(err(
                        key,
                        format!("{e} must divide the size and slide of window {:?}", w.name),
                    ));
                }
            }
            if !t.label_horizon_ms.is_multiple_of(e) || !t.retention_ms.is_multiple_of(e) {
                return Err(err(
                    key,
                    format!("{e} must divide time.label_horizon_ms and time.retention_ms"),
                ));
            }
            if t.retention_ms <= t.max_lateness_ms + e {
                return Err(err(
                    "time.retention_ms",
                    format!(
                        "must exceed time.max_lateness_ms plus outputs.emit_interval_ms ({})",
                        t.max_lateness_ms + e
                    ),
                ));
            }
        }
        if !m.auc_bins.is_multiple_of(m.calibration_bins) {
            return Err(err(
                "metrics.auc_bins",
                format!(
                    "must be a multiple of metrics.calibration_bins ({})",
                    m.calibration_bins
                ),
            ));
        }
        if let Err(reason) = crate::confine::output_dir(&spec.outputs.dir) {
            return Err(err(
                "outputs.dir",
                format!("{:?} {reason}", spec.outputs.dir),
            ));
        }
        if !spec.outputs.formats.contains(&OutputFormat::Jsonl) {
            return Err(err(
                "outputs.formats",
                "must include \"jsonl\": the JSON Lines changelog is what a restart resumes".into(),
            ));
        }
        let schemas_dir = base.join(&spec.schemas_dir);
        let mut schemas = Vec::new();
        let mut files: [Vec<PathBuf>; 3] = Default::default();
        for stream in Stream::ALL {
            let src = spec.sources.get(stream);
            let key = |k: &str| format!("sources.{stream}.{k}");
            let mut schema = InputSchema::load(&schemas_dir, &src.schema, stream)?;
            schema.extra_fields = src.extra_fields;
            schemas.push(schema);
            match (src.kind, &src.path) {
                (SourceKind::Generator, Some(_)) => {
                    return Err(err(&key("path"), "generator sources take no path".into()))
                }
                (SourceKind::Generator, None) => {}
                (SourceKind::Kafka, Some(_)) => {
                    return Err(err(
                        &key("path"),
                        "Kafka sources take a topic, not a path".into(),
                    ))
                }
                (SourceKind::Kafka, None) => {
                    let Some(topic) = &src.topic else {
                        return Err(err(&key("topic"), "Kafka sources need a topic".into()));
                    };
                    crate::kafka::check_topic(topic).map_err(|r| err(&key("topic"), r))?;
                    if spec.kafka.is_none() {
                        return Err(err(
                            "kafka",
                            format!("source {stream} reads Kafka: the job needs a [kafka] section with its brokers"),
                        ));
                    }
                }
                (_, None) => return Err(err(&key("path"), "file sources need a path".into())),
                (kind, Some(p)) => {
                    if src.topic.is_some() {
                        return Err(err(&key("topic"), "only Kafka sources take a topic".into()));
                    }
                    let found = resolve_files(&base, p, kind).map_err(|r| err(&key("path"), r))?;
                    files[stream.index()] = found;
                }
            }
        }
        let schemas: [InputSchema; 3] = schemas.try_into().expect("three streams");
        let ev = &schemas[Stream::Events.index()];
        let mut segment_idx = Vec::new();
        for s in &m.segments {
            match ev.categorical.iter().position(|c| c == s) {
                Some(i) => segment_idx.push(i),
                None => {
                    return Err(err(
                        "metrics.segments",
                        format!("{s:?} is not a categorical field of schema {}", ev.id),
                    ))
                }
            }
        }
        let mut entity_feature_idx = Vec::new();
        for s in &m.entity_features {
            match ev.numeric.iter().position(|c| c == s) {
                Some(i) => entity_feature_idx.push(i),
                None => {
                    return Err(err(
                        "metrics.entity_features",
                        format!("{s:?} is not a numeric field of schema {}", ev.id),
                    ))
                }
            }
        }
        let uses_generator = Stream::ALL
            .iter()
            .any(|s| spec.sources.get(*s).kind == SourceKind::Generator);
        if uses_generator {
            spec.generator
                .check()
                .map_err(|(k, r)| err(&format!("generator.{k}"), r))?;
            crate::generator::check_events_schema(ev)
                .map_err(|r| err("sources.events.schema", r))?;
        }
        let job = Job {
            spec,
            file: path.to_path_buf(),
            schemas,
            files,
            entity_feature_idx,
            segment_idx,
            drift: None,
            learn: None,
            kafka_partitions: Default::default(),
            alerts: Default::default(),
        };
        let r = &job.spec.replay;
        let emit = job.spec.outputs.emit_interval(job.spec.time.tick_ms);
        if let Some(s) = r.segment_ms {
            if s == 0 || s % emit != 0 {
                return Err(err(
                    "replay.segment_ms",
                    format!("must be a positive multiple of the emit interval ({emit})"),
                ));
            }
        }
        if let Some(keep) = r.retention_ms {
            let need = job.state_horizon_ms() + job.segment_ms();
            if keep < need {
                return Err(err(
                    "replay.retention_ms",
                    format!(
                        "{keep} is shorter than the job's state horizon plus one segment ({need} ms): \
                         a restart must replay that much to rebuild state"
                    ),
                ));
            }
        }
        crate::kafka::validate(&job).map_err(|(k, r)| err(&k, r))?;
        let mut job = job;
        if let Some(d) = &job.spec.drift {
            job.drift = Some(std::sync::Arc::new(crate::drift::resolve(&job, d)?));
        }
        if let Some(l) = &job.spec.learn {
            job.learn = Some(std::sync::Arc::new(crate::learn::resolve(&job, l)?));
        }
        let families: Vec<String> = job.spec.windows.iter().map(|w| w.name.clone()).collect();
        let drift_rules = job.spec.drift.as_ref().map_or(&[][..], |d| &d.alerts[..]);
        job.alerts = std::sync::Arc::new(
            crate::alerts::spec::rules(&job.spec.alerts, drift_rules, &families)
                .map_err(|(k, r)| err(&k, r))?,
        );
        if job.learn.is_none() {
            if let Some(i) = job
                .alerts
                .iter()
                .position(|r| r.metric.output() == "shadow")
            {
                return Err(err(
                    &format!("alerts[{i}].metric"),
                    format!(
                        "{} compares the online model with production: the job needs a [learn] table",
                        job.alerts[i].metric.name()
                    ),
                ));
            }
        }
        Ok(job)
    }

    /// The replay buffer's segment length.
    pub fn segment_ms(&self) -> u64 {
        let emit = self.spec.outputs.emit_interval(self.spec.time.tick_ms);
        self.spec
            .replay
            .segment_ms
            .unwrap_or_else(|| DEFAULT_SEGMENT_MS.div_ceil(emit) * emit)
    }

    /// How far back (in timestamp ms) a record can still change any output: replaying from
    /// `t - horizon` rebuilds the exact state at `t`. Every expiry in the dataflow is at most
    /// `2 retention + 2 longest window + tick` after a record's own time (the join remembers
    /// an event id that long), and a label decided by that memory lands in a window of its
    /// own time, which lives `retention + longest window` more; a record's own time is at most
    /// `max_lateness` behind its timestamp, and outputs are rounded to emit boundaries.
    pub fn state_horizon_ms(&self) -> u64 {
        let t = &self.spec.time;
        let emit = self.spec.outputs.emit_interval(t.tick_ms);
        3 * t.retention_ms
            + 3 * self.max_window_ms()
            + 2 * t.tick_ms
            + t.max_lateness_ms
            + t.label_horizon_ms
            + 2 * emit
    }

    /// Fingerprint of everything that decides timestamps and outputs from given records.
    pub fn fingerprint(&self) -> String {
        let s = &self.spec;
        let mut text = format!(
            "{:?}|{:?}|{:?}|{:?}|{}",
            s.time,
            s.windows,
            s.metrics,
            self.schemas,
            s.outputs.emit_interval(s.time.tick_ms),
        );
        // Appended only when present, so buffers of jobs without drift keep their fingerprint.
        // The reference's content counts, wherever it was read from: a restart or replay
        // against another reference would compute other drift.
        if let Some(d) = &self.drift {
            text.push_str(&format!("|{:?}|{}", d.spec, d.profile.digest()));
        }
        // Where versions are published does not change any output.
        if let Some(l) = &self.spec.learn {
            text.push_str(&format!("|learn|{}", l.fingerprint_text()));
        }
        // The alert state refers to rules by position.
        if !s.alerts.is_empty() {
            text.push_str(&format!("|alerts|{:?}", s.alerts));
        }
        // Caps decide which rows exist.
        if let Some(l) = &s.limits {
            text.push_str(&format!("|limits|{l:?}"));
        }
        crate::replay::segment::sha256_hex(text.as_bytes())
    }

    /// Fingerprint of where records come from: sources and generator parameters.
    pub fn sources_fingerprint(&self) -> String {
        let s = &self.spec;
        crate::replay::segment::sha256_hex(format!("{:?}|{:?}", s.sources, s.generator).as_bytes())
    }

    /// The streams read from files that hold no record at all (zero-byte JSON Lines, Parquet
    /// without rows), known before the run.
    pub fn empty_streams(&self) -> Vec<Stream> {
        let empty = |p: &PathBuf| match p.extension().and_then(|e| e.to_str()) {
            Some("parquet") => std::fs::File::open(p).ok().is_some_and(|f| {
                crate::sources::partition::guarded(|| {
                    use parquet::file::reader::FileReader;
                    parquet::file::reader::SerializedFileReader::new(f)
                        .map(|r| r.metadata().file_metadata().num_rows() == 0)
                })
                .unwrap_or(false)
            }),
            _ => std::fs::metadata(p).is_ok_and(|m| m.len() == 0),
        };
        Stream::ALL
            .into_iter()
            .filter(|s| {
                let files = &self.files[s.index()];
                !files.is_empty() && files.iter().all(empty)
            })
            .collect()
    }

    /// The input schema of `stream`.
    pub fn schema(&self, stream: Stream) -> &InputSchema {
        &self.schemas[stream.index()]
    }

    /// Length of the longest window, which bounds how long an event feeds any window.
    pub fn max_window_ms(&self) -> u64 {
        self.spec
            .windows
            .iter()
            .map(|w| w.size_ms)
            .max()
            .unwrap_or(0)
    }
}

/// Expands a file, directory or glob into a sorted list of files.
pub fn resolve_files(
    base: &Path,
    pattern: &str,
    kind: SourceKind,
) -> std::result::Result<Vec<PathBuf>, String> {
    let ext = match kind {
        SourceKind::Jsonl => "jsonl",
        SourceKind::Parquet => "parquet",
        SourceKind::Generator | SourceKind::Kafka => unreachable!("only file sources have files"),
    };
    let full = base.join(pattern);
    let mut out = Vec::new();
    if full.is_dir() {
        let rd = std::fs::read_dir(&full).map_err(|e| format!("{}: {e}", full.display()))?;
        for entry in rd {
            let p = entry.map_err(|e| e.to_string())?.path();
            if p.extension().and_then(|e| e.to_str()) == Some(ext) {
                out.push(p);
            }
        }
    } else if full.is_file() {
        out.push(full.clone());
    } else {
        let pat = full.to_string_lossy().to_string();
        let paths = glob::glob(&pat).map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
        for p in paths {
            let p = p.map_err(|e| e.to_string())?;
            if p.is_file() {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{pattern:?} (resolved to {}) matches no .{ext} file",
            full.display()
        ));
    }
    out.sort();
    if kind == SourceKind::Jsonl {
        // A directory, a pipe (whose open would block) or an unreadable file is refused here,
        // naming it.
        for p in &out {
            let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if !meta.is_file() {
                return Err(format!("{}: not a regular file", p.display()));
            }
            std::fs::File::open(p).map_err(|e| format!("{}: cannot be read: {e}", p.display()))?;
        }
    }
    if kind == SourceKind::Parquet {
        // A file whose footer cannot be read (empty, truncated, not Parquet) is refused here,
        // naming it, rather than found out by the running job.
        for p in &out {
            let f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
            if let Err(e) = crate::sources::partition::guarded(|| {
                parquet::file::reader::SerializedFileReader::new(f)
            }) {
                return Err(format!("{}: not a readable Parquet file: {e}", p.display()));
            }
        }
    }
    Ok(out)
}
