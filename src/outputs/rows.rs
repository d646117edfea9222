//! Output rows: how each changelog value is written, column by column.
//!
//! Rows are computed from exact integers; floats appear only here, at formatting time, from a
//! fixed formula, so the bytes are the same on every run and worker count.

use serde_json::{json, Value};

use crate::dataflow::detect::DetectionRow;
use crate::dataflow::drift::{AlertRow, DKey, DriftRow};
use crate::dataflow::features::FeatureRow;
use crate::dataflow::labels::LabelRow;
use crate::dataflow::learn::ShadowRow;
use crate::dataflow::quality::QualityRow;
use crate::dataflow::windows::{Status, Win, Windows};
use crate::drift::FeatureKind;
use crate::learn::learner::{By, DecisionRow, QuarantineRow, VersionRow, WindowStats};
use crate::records::{DeadLetter, MICRO};

/// Ingest reconciliation of one stream: records read = accepted + dead-lettered.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct IngestRow {
    /// Stream name.
    pub stream: String,
    /// Records read.
    pub read: i64,
    /// Records accepted.
    pub accepted: i64,
    /// Records sent to dead letters.
    pub dead_lettered: i64,
    /// Of the dead-lettered, duplicates of an earlier record.
    pub duplicates: i64,
    /// Labels accepted after every window of their event had retired.
    pub too_late: i64,
    /// Labels whose event was unseen when their decision fell due.
    pub orphaned: i64,
    /// The retention that would have kept every too-late label's windows, ms.
    pub retention_to_hold_ms: Option<u64>,
}

/// What formatting needs from the job.
#[derive(Debug, Clone)]
pub struct Format {
    /// Window names and arithmetic.
    pub windows: Windows,
    /// Names of the entity features, in `FeatureAgg::stats` order.
    pub feature_names: Vec<String>,
    /// Drift monitoring, if the job has it.
    pub drift: Option<std::sync::Arc<crate::drift::Drift>>,
    /// Alert rules.
    pub alerts: std::sync::Arc<Vec<crate::alerts::Rule>>,
    /// Outputs are not written as Parquet, so a line's text (and, for an output that goes to
    /// Kafka, its message key) is all a sink needs of it.
    pub text_only: bool,
    /// Outputs that go to a Kafka topic.
    pub kafka: std::collections::BTreeSet<String>,
    /// The events schema declares its id an integer: ids print as the integers they were.
    pub integer_ids: bool,
}

impl Format {
    /// An event id as an output value: the integer it was read as, if the events schema
    /// declares integer ids (an id decoded from an integer is its digits), else the string.
    pub fn event_id(&self, id: &str) -> Value {
        if self.integer_ids {
            if let Ok(x) = id.parse::<u64>() {
                return x.into();
            }
            if let Ok(x) = id.parse::<i64>() {
                return x.into();
            }
        }
        id.into()
    }

    /// The formatting context of `job`.
    pub fn new(job: &crate::config::Job) -> Format {
        Format {
            windows: Windows::new(job),
            feature_names: job.spec.metrics.entity_features.clone(),
            drift: job.drift.clone(),
            alerts: job.alerts.clone(),
            integer_ids: matches!(
                job.schema(crate::schema::Stream::Events)
                    .field(crate::schema::Role::Id)
                    .ty,
                crate::schema::FieldType::Int64 | crate::schema::FieldType::Uint64
            ),
            text_only: !job
                .spec
                .outputs
                .formats
                .contains(&crate::config::OutputFormat::Parquet),
            kafka: job
                .spec
                .outputs
                .kafka
                .iter()
                .flat_map(|k| k.topics.keys().cloned())
                .collect(),
        }
    }

    /// The Kafka message key columns of output `name`, if it goes to a topic.
    pub fn kafka_keys(&self, name: &str) -> Option<&'static [&'static str]> {
        self.kafka
            .contains(name)
            .then(|| crate::kafka::sink::key_columns(name))
            .flatten()
    }
}

/// Columns of one output line (without `ts` and `diff`), in schema order.
pub type Columns = Vec<(&'static str, Value)>;

/// A changelog value that can be written.
pub trait OutputRow: Clone + Ord + std::fmt::Debug + 'static {
    /// Output name: file stem and schema id prefix.
    const NAME: &'static str;
    /// The line(s) this value is written as.
    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>);
    /// The window status, for rows that have one.
    fn status(&self) -> Option<Status> {
        None
    }
    /// Moves the metrics by this row's change of `diff`.
    fn observe(&self, _diff: isize, _ctx: &Format, _m: &mut crate::metrics::Metrics) {}
    /// This value's JSON lines at `ts` with `diff`, each ended by a newline, appended to `out`
    /// (`cols` is scratch): `json_line` of each of its columns. Returns how many.
    fn lines(
        &self,
        ts: u64,
        diff: isize,
        ctx: &Format,
        cols: &mut Vec<Columns>,
        out: &mut Vec<u8>,
    ) -> usize {
        cols.clear();
        self.columns(ctx, cols);
        for c in cols.iter() {
            push_json_line(out, ts, diff, c);
            out.push(b'\n');
        }
        cols.len()
    }
}

/// A JSON line written field by field into a buffer, with `serde_json`'s own text for every
/// value (the bytes `json_line` gives for the same columns), for outputs with many lines.
struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    fn start(&mut self, ts: u64, diff: isize) -> &mut Self {
        let mut n = itoa::Buffer::new();
        self.0.extend_from_slice(b"{\"ts\":");
        self.0.extend_from_slice(n.format(ts).as_bytes());
        self.0.extend_from_slice(b",\"diff\":");
        self.0.extend_from_slice(n.format(diff).as_bytes());
        self
    }

    fn key(&mut self, k: &str) -> &mut Self {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(k.as_bytes());
        self.0.extend_from_slice(b"\":");
        self
    }

    fn value<T: serde::Serialize + ?Sized>(&mut self, k: &str, v: &T) -> &mut Self {
        self.key(k);
        serde_json::to_writer(&mut *self.0, v).expect("a JSON value serializes");
        self
    }

    /// A float as `opt` writes it: null unless finite.
    fn float(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        match v {
            Some(x) if x.is_finite() => self.value(k, &x),
            _ => self.value(k, &()),
        }
    }

    /// Closes the line and ends it with a newline.
    fn finish(&mut self) {
        self.0.extend_from_slice(b"}\n");
    }
}

fn win_cols(windows: &Windows, w: &Win) -> Columns {
    vec![
        ("window", json!(windows.name(w))),
        ("window_start", json!(w.start)),
        ("window_end", json!(w.end)),
    ]
}

fn ratio(a: i64, b: i64) -> Value {
    if b == 0 {
        Value::Null
    } else {
        json!(a as f64 / b as f64)
    }
}

fn opt(x: Option<f64>) -> Value {
    match x {
        Some(v) if v.is_finite() => json!(v),
        _ => Value::Null,
    }
}

impl crate::alerts::AlertEvent {
    /// The record's message: rule, state, value against bound, window and series.
    pub fn message(&self, ctx: &Format) -> String {
        let rule = &ctx.alerts[self.rule as usize];
        let value = f64::from_bits(self.value);
        let bound = f64::from_bits(self.bound);
        let baseline = self.baseline.map(f64::from_bits);
        let state = if self.firing { "firing" } else { "resolved" };
        let mut series = format!("segment {}", self.segment);
        if !self.model.is_empty() {
            series.push_str(&format!(", model {}", self.model));
        }
        if !self.feature.is_empty() {
            series.push_str(&format!(", feature {}", self.feature));
        }
        let measure = match rule.condition {
            crate::alerts::spec::Condition::Burn { .. } => {
                format!("error-budget burn rate of {}", rule.metric.name())
            }
            _ => rule.metric.name().to_string(),
        };
        if bound.is_nan() {
            format!(
                "{} resolved: {series} has had no window with enough examples for longer than the retention since window {} [{}, {})",
                rule.name,
                ctx.windows.name(&self.win),
                crate::runtime::iso_time(self.win.start),
                crate::runtime::iso_time(self.win.end),
            )
        } else {
            format!(
            "{} {state}: {measure} = {value:.6} against {bound:.6}{} in window {} [{}, {}), {series} ({} examples)",
            rule.name,
            baseline.map_or(String::new(), |b| format!(" (baseline {b:.6})")),
            ctx.windows.name(&self.win),
            crate::runtime::iso_time(self.win.start),
            crate::runtime::iso_time(self.win.end),
            self.count,
        )
        }
    }
}

impl OutputRow for crate::alerts::AlertEvent {
    const NAME: &'static str = "alerts";

    fn observe(&self, diff: isize, ctx: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::alert(m, self, diff, ctx);
    }

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        let rule = &ctx.alerts[self.rule as usize];
        let value = f64::from_bits(self.value);
        let bound = f64::from_bits(self.bound);
        let baseline = self.baseline.map(f64::from_bits);
        let non_empty = |s: &str| {
            if s.is_empty() {
                Value::Null
            } else {
                json!(s)
            }
        };
        let state = if self.firing { "firing" } else { "resolved" };
        let message = self.message(ctx);
        let mut c = vec![
            ("rule", json!(rule.name)),
            ("severity", json!(rule.severity)),
            ("state", json!(state)),
            ("metric", json!(rule.metric.name())),
        ];
        c.extend(win_cols(&ctx.windows, &self.win));
        c.extend([
            ("segment", json!(self.segment)),
            ("model_version", non_empty(&self.model)),
            ("feature", non_empty(&self.feature)),
            ("value", opt(Some(value))),
            ("threshold", opt(Some(bound))),
            ("baseline", opt(baseline)),
            ("count", json!(self.count)),
            ("runbook", json!(rule.runbook)),
            ("message", json!(message)),
        ]);
        out.push(c);
    }
}

impl OutputRow for QualityRow {
    const NAME: &'static str = "quality";

    fn observe(&self, diff: isize, ctx: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::quality(m, self, diff, ctx);
    }

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        let windows = &ctx.windows;
        let a = &self.agg;
        let mut c = win_cols(windows, &self.key.win);
        let (auc, method) = self.auc();
        c.extend([
            ("segment", json!(self.key.segment)),
            ("model_version", json!(self.key.model)),
            ("status", json!(self.status.name())),
            ("count", json!(a.count)),
            ("positives", json!(a.positives)),
            ("accuracy", opt(self.accuracy())),
            ("log_loss", opt(self.log_loss())),
            ("brier", opt(self.brier())),
            ("auc", opt(auc)),
            ("auc_method", json!(method)),
            (
                "calibration_count",
                json!(a.calibration.iter().map(|b| b.0).collect::<Vec<_>>()),
            ),
            (
                "calibration_mean_score",
                Value::Array(
                    a.calibration
                        .iter()
                        .map(|b| opt((b.0 > 0).then(|| b.1 as f64 / 1e6 / b.0 as f64)))
                        .collect(),
                ),
            ),
            (
                "calibration_positive_rate",
                Value::Array(a.calibration.iter().map(|b| ratio(b.2, b.0)).collect()),
            ),
        ]);
        out.push(c);
    }

    fn status(&self) -> Option<Status> {
        Some(self.status)
    }
}

impl OutputRow for LabelRow {
    const NAME: &'static str = "label_health";

    fn observe(&self, diff: isize, ctx: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::labels(m, self, diff, ctx);
    }

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        let windows = &ctx.windows;
        let a = &self.agg;
        let p = a.percentiles();
        let mut c = win_cols(windows, &self.key.win);
        c.extend([
            ("segment", json!(self.key.segment)),
            ("status", json!(self.status.name())),
            ("events", json!(a.events)),
            ("labeled", json!(a.labeled)),
            ("labeled_within_horizon", json!(a.within_horizon)),
            ("labeled_fraction", opt(a.labeled_fraction())),
            (
                "unlabeled",
                if self.status == Status::Provisional {
                    Value::Null
                } else {
                    json!(a.events - a.within_horizon)
                },
            ),
            ("relabeled", json!(a.relabeled)),
            ("orphan_labels", json!(a.orphans)),
            ("late_labels", json!(a.late)),
            ("latency_p50_ms", json!(p.map(|p| p.p50))),
            ("latency_p95_ms", json!(p.map(|p| p.p95))),
            ("latency_p99_ms", json!(p.map(|p| p.p99))),
            ("latency_max_ms", json!(p.map(|p| p.max))),
        ]);
        out.push(c);
    }

    fn status(&self) -> Option<Status> {
        Some(self.status)
    }
}

impl OutputRow for FeatureRow {
    const NAME: &'static str = "entity_features";

    fn observe(&self, diff: isize, ctx: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::features(m, self, diff, ctx);
    }

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        let a = &self.agg;
        let names = &ctx.feature_names;
        let windows = &ctx.windows;
        let base = |feature: Value| {
            let mut c = win_cols(windows, &self.key.win);
            c.extend([
                ("entity", json!(self.key.entity)),
                ("feature", feature),
                ("status", json!(self.status.name())),
                ("events", json!(a.events)),
                (
                    "freshness_ms",
                    json!(self.key.win.end.saturating_sub(a.last_time)),
                ),
            ]);
            c
        };
        if a.stats.is_empty() {
            let mut c = base(Value::Null);
            c.extend([
                ("n", json!(0)),
                ("mean", Value::Null),
                ("std", Value::Null),
                ("min", Value::Null),
                ("max", Value::Null),
            ]);
            out.push(c);
        }
        for (s, name) in a.stats.iter().zip(names) {
            let mut c = base(json!(name));
            let some = s.n > 0;
            c.extend([
                ("n", json!(s.n)),
                ("mean", opt(s.mean())),
                ("std", opt(s.std())),
                ("min", opt(some.then(|| s.min as f64 / 1e6))),
                ("max", opt(some.then(|| s.max as f64 / 1e6))),
            ]);
            out.push(c);
        }
    }

    fn status(&self) -> Option<Status> {
        Some(self.status)
    }

    /// The lines of [`FeatureRow::columns`], written without building columns: entity
    /// features are most of a bench run's output lines.
    fn lines(
        &self,
        ts: u64,
        diff: isize,
        ctx: &Format,
        _cols: &mut Vec<Columns>,
        out: &mut Vec<u8>,
    ) -> usize {
        let a = &self.agg;
        let w = &self.key.win;
        // The fields before and after `feature` are the same in every line of the row: written
        // once, copied per feature.
        let mut head = Vec::with_capacity(160);
        Line(&mut head)
            .start(ts, diff)
            .value("window", ctx.windows.name(w))
            .value("window_start", &w.start)
            .value("window_end", &w.end)
            .value("entity", &self.key.entity);
        let mut tail = Vec::with_capacity(64);
        Line(&mut tail)
            .value("status", self.status.name())
            .value("events", &a.events)
            .value("freshness_ms", &w.end.saturating_sub(a.last_time));
        let base = |out: &mut Vec<u8>, feature: Option<&str>| {
            out.extend_from_slice(&head);
            Line(&mut *out).value("feature", &feature);
            out.extend_from_slice(&tail);
        };
        let mut n = 0;
        if a.stats.is_empty() {
            base(out, None);
            Line(&mut *out)
                .value("n", &0)
                .value("mean", &())
                .value("std", &())
                .value("min", &())
                .value("max", &())
                .finish();
            n += 1;
        }
        for (s, name) in a.stats.iter().zip(&ctx.feature_names) {
            let some = s.n > 0;
            base(out, Some(name));
            Line(&mut *out)
                .value("n", &s.n)
                .float("mean", s.mean())
                .float("std", s.std())
                .float("min", some.then(|| s.min as f64 / 1e6))
                .float("max", some.then(|| s.max as f64 / 1e6))
                .finish();
            n += 1;
        }
        n
    }
}

fn drift_key_cols(ctx: &Format, k: &DKey) -> Columns {
    let drift = ctx
        .drift
        .as_ref()
        .expect("drift rows only exist with [drift]");
    let f = &drift.features[k.feature as usize];
    let mut c = win_cols(&ctx.windows, &k.win);
    c.extend([
        ("segment", json!(k.segment)),
        ("feature", json!(f.name)),
        (
            "model_version",
            if f.kind == FeatureKind::Score {
                json!(k.model)
            } else {
                Value::Null
            },
        ),
    ]);
    c
}

impl OutputRow for DriftRow {
    const NAME: &'static str = "drift";

    fn observe(&self, diff: isize, ctx: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::drift(m, self, diff, ctx);
    }

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        let drift = ctx
            .drift
            .as_ref()
            .expect("drift rows only exist with [drift]");
        let s = self.stats(drift);
        let kind = match drift.features[self.key.feature as usize].kind {
            FeatureKind::Categorical(_) => "categorical",
            FeatureKind::Numeric(_) | FeatureKind::Score => "numeric",
        };
        let mut c = drift_key_cols(ctx, &self.key);
        c.extend([
            ("kind", json!(kind)),
            ("status", json!(self.status.name())),
            ("method", json!(self.method(drift).name())),
            ("count", json!(s.count)),
            ("nulls", json!(s.nulls)),
            ("null_rate", opt(s.null_rate)),
            ("constant", json!(s.constant)),
            ("psi", opt(s.psi)),
            ("js_distance", opt(s.js_distance)),
            ("ks", opt(s.ks)),
            ("ks_p_value", opt(s.ks_p_value)),
            ("wasserstein", opt(s.wasserstein)),
            ("chi2", opt(s.chi2)),
            ("chi2_dof", json!(s.chi2_dof)),
            ("chi2_p_value", opt(s.chi2_p_value)),
            ("unseen_rate", opt(s.unseen_rate)),
        ]);
        out.push(c);
    }

    fn status(&self) -> Option<Status> {
        Some(self.status)
    }
}

impl OutputRow for AlertRow {
    const NAME: &'static str = "drift_alerts";

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        let drift = ctx.drift.as_ref().expect("alerts only exist with [drift]");
        let rule = self.rule(drift);
        let (direction, threshold) = match (rule.above, rule.below) {
            (Some(a), _) => ("above", a),
            (None, Some(b)) => ("below", b),
            (None, None) => unreachable!("validated: one of above or below"),
        };
        let mut c = drift_key_cols(ctx, &self.key);
        c.extend([
            ("status", json!(self.status.name())),
            ("statistic", json!(rule.statistic.name())),
            ("value", opt(Some(f64::from_bits(self.value)))),
            ("direction", json!(direction)),
            ("threshold", json!(threshold)),
            ("severity", json!(format!("{:?}", rule.severity))),
            ("count", json!(self.count)),
            ("method", json!(self.method.name())),
        ]);
        out.push(c);
    }

    fn status(&self) -> Option<Status> {
        Some(self.status)
    }
}

impl OutputRow for DetectionRow {
    const NAME: &'static str = "drift_detections";

    fn observe(&self, diff: isize, ctx: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::detection(m, self, diff, ctx);
    }

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        let drift = ctx
            .drift
            .as_ref()
            .expect("detections only exist with [drift]");
        out.push(vec![
            ("model_version", json!(self.model)),
            (
                "detector",
                json!(drift.detectors[self.detector as usize].name()),
            ),
            ("detector_index", json!(self.detector)),
            ("position", json!(self.position)),
            ("event_id", ctx.event_id(&self.event_id)),
            ("event_time", json!(self.event_time)),
            ("detail", json!(self.detail)),
        ]);
    }
}

impl OutputRow for DeadLetter {
    const NAME: &'static str = "dead_letters";

    fn observe(&self, diff: isize, _: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::dead_letter(m, self, diff);
    }

    fn columns(&self, _: &Format, out: &mut Vec<Columns>) {
        out.push(vec![
            ("stream", json!(self.stream)),
            ("source", json!(self.position.source)),
            ("offset", json!(self.position.offset)),
            ("field", json!(self.field)),
            ("reason", json!(self.reason)),
            ("raw", json!(self.raw)),
        ]);
    }
}

impl OutputRow for IngestRow {
    const NAME: &'static str = "ingest";

    fn observe(&self, diff: isize, _: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::ingest(m, self, diff);
    }

    fn columns(&self, _: &Format, out: &mut Vec<Columns>) {
        out.push(vec![
            ("stream", json!(self.stream)),
            ("read", json!(self.read)),
            ("accepted", json!(self.accepted)),
            ("dead_lettered", json!(self.dead_lettered)),
            ("duplicates", json!(self.duplicates)),
            ("too_late_labels", json!(self.too_late)),
            ("orphaned_labels", json!(self.orphaned)),
            ("retention_to_hold_ms", json!(self.retention_to_hold_ms)),
        ]);
    }
}

/// Renders one changelog line as JSON, columns in schema order after `ts` and `diff`.
pub fn json_line(ts: u64, diff: isize, cols: &Columns) -> String {
    let mut s: Vec<u8> = Vec::with_capacity(256);
    push_json_line(&mut s, ts, diff, cols);
    String::from_utf8(s).expect("JSON is UTF-8")
}

/// [`json_line`]'s bytes, appended to `out`.
pub fn push_json_line(out: &mut Vec<u8>, ts: u64, diff: isize, cols: &Columns) {
    // Values are written straight into the line (a `String` per value was most of a sink's
    // allocations); the text is `Value`'s own `Display`, so the bytes are unchanged.
    let mut line = Line(out);
    line.start(ts, diff);
    for (k, v) in cols {
        line.value(k, v);
    }
    out.push(b'}');
}

fn window_stat_cols(w: &WindowStats) -> Columns {
    vec![
        ("window_examples", json!(w.n)),
        ("online_log_loss", opt(w.online_loss())),
        ("online_accuracy", opt(w.online_accuracy())),
        ("champion_examples", json!(w.champion_n)),
        ("champion_log_loss", opt(w.champion_loss())),
        ("champion_accuracy", opt(w.champion_accuracy())),
    ]
}

impl OutputRow for VersionRow {
    const NAME: &'static str = "model_versions";

    fn observe(&self, diff: isize, _: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::version(m, self, diff);
    }

    fn columns(&self, _: &Format, out: &mut Vec<Columns>) {
        let mut c = vec![
            ("version", json!(self.version)),
            ("parent", json!(self.parent)),
            ("trained_from_ts", json!(self.trained_from_ts)),
            ("trained_through_ts", json!(self.trained_through_ts)),
            ("examples", json!(self.examples)),
            ("checksum", json!(self.checksum)),
            ("weight_norm", opt(Some(f64::from_bits(self.norm_bits)))),
        ];
        c.extend(window_stat_cols(&self.window));
        out.push(c);
    }
}

impl OutputRow for DecisionRow {
    const NAME: &'static str = "model_decisions";

    fn observe(&self, diff: isize, _: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::decision(m, self, diff);
    }

    fn columns(&self, _: &Format, out: &mut Vec<Columns>) {
        let mut c = vec![
            ("seq", json!(self.seq)),
            ("action", json!(self.action.name())),
            ("version", json!(self.version)),
            ("champion", json!(self.champion)),
            ("reason", json!(self.reason)),
            ("score_psi", opt(self.psi_bits.map(f64::from_bits))),
        ];
        let (by, command) = match self.by {
            By::Job => ("job", None),
            By::Operator(seq) => ("operator", Some(seq)),
        };
        c.extend([("by", json!(by)), ("command", json!(command))]);
        c.extend(window_stat_cols(&self.window));
        out.push(c);
    }
}

impl OutputRow for QuarantineRow {
    const NAME: &'static str = "quarantine";

    fn observe(&self, diff: isize, _: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::quarantine(m, self, diff);
    }

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        out.push(vec![
            ("event_id", ctx.event_id(&self.event_id)),
            ("entity", json!(self.entity)),
            ("event_time", json!(self.event_time)),
            ("reason", json!(self.reason)),
        ]);
    }
}

impl OutputRow for ShadowRow {
    const NAME: &'static str = "shadow";

    fn observe(&self, diff: isize, ctx: &Format, m: &mut crate::metrics::Metrics) {
        crate::metrics::observe::shadow(m, self, diff, ctx);
    }

    fn columns(&self, ctx: &Format, out: &mut Vec<Columns>) {
        let m = MICRO as f64;
        let mean = |x: i64| opt((self.count > 0).then(|| x as f64 / m / self.count as f64));
        let mut c = win_cols(&ctx.windows, &self.key.win);
        c.extend([
            ("segment", json!(self.key.segment)),
            ("model_version", json!(self.key.model)),
            ("count", json!(self.count)),
            ("agreement", ratio(self.agree, self.count)),
            ("mean_abs_score_diff", mean(self.abs_diff)),
            ("mean_score_diff", mean(self.diff)),
        ]);
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::features::{FKey, FeatureAgg, FeatureStat};

    /// Entity features written field by field are the bytes their columns give.
    #[test]
    fn feature_lines_equal_their_columns() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/demo.toml");
        let job = crate::config::Job::load(&dir).expect("the demo job loads");
        let ctx = Format::new(&job);
        let stat = |n, sum: i128, sum_sq: i128, min, max| FeatureStat {
            n,
            sum,
            sum_sq,
            min,
            max,
        };
        let stats = [
            vec![],
            vec![stat(0, 0, 0, 0, 0); ctx.feature_names.len()],
            (0..ctx.feature_names.len())
                .map(|i| stat(3, 6_123_457 * i as i128, 14_000_000_000_000, -2, 4_500_001))
                .collect(),
            vec![stat(2, i128::MAX / 2, i128::MAX, i64::MIN, i64::MAX); ctx.feature_names.len()],
        ];
        for (i, stats) in stats.into_iter().enumerate() {
            for status in [Status::Provisional, Status::Final, Status::Retired] {
                let row = FeatureRow {
                    key: FKey {
                        win: Win {
                            family: 0,
                            start: 1_767_225_300_000,
                            end: 1_767_225_600_000,
                        },
                        entity: format!("ent\"{i}\\é").into(),
                    },
                    status,
                    agg: FeatureAgg {
                        events: 11,
                        last_time: 1_767_225_599_990 + i as u64 * 100,
                        stats: stats.clone(),
                    },
                };
                let (mut cols, mut fast) = (Vec::new(), Vec::new());
                let n = row.lines(1_767_225_600_000, -1, &ctx, &mut cols, &mut fast);
                cols.clear();
                row.columns(&ctx, &mut cols);
                let slow: String = cols
                    .iter()
                    .map(|c| json_line(1_767_225_600_000, -1, c) + "\n")
                    .collect();
                assert_eq!(n, cols.len());
                assert_eq!(String::from_utf8(fast).unwrap(), slow);
            }
        }
    }
}
