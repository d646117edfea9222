//! How each changelog row moves the metrics; metric names and help texts are defined here.

use super::{Kind, Labels, Metrics, Registry};
use crate::alerts::AlertEvent;
use crate::dataflow::detect::DetectionRow;
use crate::dataflow::drift::DriftRow;
use crate::dataflow::features::FeatureRow;
use crate::dataflow::labels::LabelRow;
use crate::dataflow::quality::QualityRow;
use crate::dataflow::windows::Status;
use crate::drift::spec::Statistic;
use crate::learn::learner::{Action, DecisionRow, QuarantineRow, VersionRow};
use crate::outputs::rows::{Format, IngestRow};
use crate::records::DeadLetter;

const QUALITY: [(&str, &str); 5] = [
    (
        "tidemark_quality_accuracy",
        "Share of labeled predictions correct at the threshold, newest final window.",
    ),
    (
        "tidemark_quality_log_loss",
        "Mean log-loss of labeled predictions, newest final window.",
    ),
    (
        "tidemark_quality_brier",
        "Mean Brier score of labeled predictions, newest final window.",
    ),
    (
        "tidemark_quality_auc",
        "ROC AUC of labeled predictions (exact), newest final window.",
    ),
    (
        "tidemark_quality_examples",
        "Labeled predictions in the newest final window.",
    ),
];
const LABEL_COMPLETENESS: &str = "tidemark_label_completeness_ratio";
const LABEL_EVENTS: &str = "tidemark_label_events";
const LABEL_UNLABELED: &str = "tidemark_label_unlabeled_events";
const LABEL_LATENCY: &str = "tidemark_label_latency_seconds";
const LABEL_ORPHANS: &str = "tidemark_label_orphans";
const DRIFT: &str = "tidemark_drift_score";
const DRIFT_COUNT: &str = "tidemark_drift_values";
const FRESHNESS: &str = "tidemark_feature_freshness_seconds";
const INGEST: &str = "tidemark_ingest_records_total";
const TOO_LATE_RATIO: &str = "tidemark_labels_too_late_ratio";
const RETENTION_TO_HOLD: &str = "tidemark_labels_retention_to_hold_seconds";
const DEAD: &str = "tidemark_dead_letters_total";
const DETECTIONS: &str = "tidemark_drift_detections_total";
const VERSIONS: &str = "tidemark_model_versions_published_total";
const DECISIONS: &str = "tidemark_model_decisions_total";
const PAUSED: &str = "tidemark_model_updates_paused";
const QUARANTINED: &str = "tidemark_quarantined_examples_total";
const ALERTS_FIRING: &str = "tidemark_alerts_firing";
const ALERT_EVENTS: &str = "tidemark_alert_events_total";
const WRITTEN_BELOW: &str = "tidemark_output_written_below_timestamp_seconds";
const SHADOW_AGREEMENT: &str = "tidemark_shadow_agreement_ratio";
const SHADOW_DIVERGENCE: &str = "tidemark_shadow_score_divergence";
const SHADOW_EVENTS: &str = "tidemark_shadow_events";

/// Drift statistics exposed, by name.
const DRIFT_STATS: [Statistic; 8] = [
    Statistic::Psi,
    Statistic::Ks,
    Statistic::Wasserstein,
    Statistic::JsDistance,
    Statistic::Chi2,
    Statistic::UnseenRate,
    Statistic::NullRate,
    Statistic::Constant,
];

/// Declares the families the job can produce, so a scrape shows them from the start.
pub fn declare(r: &mut Registry, job: &crate::config::Job) {
    for (name, help) in QUALITY {
        r.declare(name, Kind::Gauge, help);
    }
    r.declare(LABEL_COMPLETENESS, Kind::Gauge, help(LABEL_COMPLETENESS));
    r.declare(LABEL_LATENCY, Kind::Gauge, help(LABEL_LATENCY));
    r.declare(INGEST, Kind::Counter, help(INGEST));
    r.declare(DEAD, Kind::Counter, help(DEAD));
    r.declare(WRITTEN_BELOW, Kind::Gauge, help(WRITTEN_BELOW));
    r.declare(FRESHNESS, Kind::Gauge, help(FRESHNESS));
    if job.drift.is_some() {
        r.declare(DRIFT, Kind::Gauge, help(DRIFT));
        r.declare(DETECTIONS, Kind::Counter, help(DETECTIONS));
    }
    if job.learn.is_some() {
        r.declare(VERSIONS, Kind::Counter, help(VERSIONS));
        r.declare(DECISIONS, Kind::Counter, help(DECISIONS));
        r.declare(PAUSED, Kind::Gauge, help(PAUSED));
        r.declare(QUARANTINED, Kind::Counter, help(QUARANTINED));
        for name in [SHADOW_AGREEMENT, SHADOW_DIVERGENCE, SHADOW_EVENTS] {
            r.declare(name, Kind::Gauge, help(name));
        }
    }
    if !job.alerts.is_empty() {
        r.declare(ALERTS_FIRING, Kind::Gauge, help(ALERTS_FIRING));
        for rule in job.alerts.iter() {
            let labels = vec![
                ("rule", rule.name.clone()),
                ("severity", format!("{:?}", rule.severity)),
            ];
            r.set(ALERTS_FIRING, help(ALERTS_FIRING), labels, 0.0);
        }
        r.declare(ALERT_EVENTS, Kind::Counter, help(ALERT_EVENTS));
    }
}

fn help(name: &str) -> &'static str {
    match name {
        LABEL_COMPLETENESS => "Share of events labeled within the label horizon, newest final window.",
        LABEL_EVENTS => "Events in the newest final window.",
        LABEL_UNLABELED => "Events without a label at the horizon, newest final window.",
        LABEL_LATENCY => "Label latency percentiles (first label time minus event time), newest final window.",
        LABEL_ORPHANS => "Labels whose event never arrived, newest final window.",
        DRIFT => "Drift statistic of a feature against the reference, newest final window.",
        DRIFT_COUNT => "Non-null values behind the drift statistics, newest final window.",
        FRESHNESS => "Window end minus an entity's last event, min and max over the newest final window's entities.",
        INGEST => "Records per stream and outcome: read, accepted, dead_lettered (duplicates among them), and labels too_late or orphaned (the ingest changelog).",
        TOO_LATE_RATIO => "Share of accepted labels that arrived after every window of their event had retired.",
        RETENTION_TO_HOLD => "The time.retention_ms (in seconds) that would have kept every too-late label's windows.",
        DEAD => "Dead letters per stream, field and reason class.",
        DETECTIONS => "Concept-drift detections on the production model's errors, per detector.",
        SHADOW_AGREEMENT => "Share of events the online model and the production model classify alike at the threshold, newest window (as it stands).",
        SHADOW_DIVERGENCE => "Mean absolute difference between the online model's and the production model's scores, newest window (as it stands).",
        SHADOW_EVENTS => "Events scored by both the online model and the production model, newest window (as it stands).",
        VERSIONS => "Online model versions published.",
        DECISIONS => "Learner decisions: promote and block (canary), rollback, pause, resume, update_failed, rate changes.",
        PAUSED => "1 while online model updates are paused (after a rollback).",
        QUARANTINED => "Examples kept out of learning, per defence.",
        ALERTS_FIRING => "Alerts firing now, per rule.",
        ALERT_EVENTS => "Alert state changes (firing, resolved), per rule.",
        WRITTEN_BELOW => "Each changelog's lines below this event time (seconds) are reflected in these metrics.",
        _ => "",
    }
}

fn window_labels(ctx: &Format, win: &crate::dataflow::windows::Win) -> Labels {
    vec![("window", ctx.windows.name(win).to_string())]
}

/// Sets the gauges of `series` (series labels then `extra`) if `end` is its newest window.
fn newest(
    m: &mut Metrics,
    group: &'static str,
    series: Labels,
    end: u64,
    values: &[(&'static str, Labels, Option<f64>)],
) {
    if !m.newest_window(group, &series, end) {
        return;
    }
    for (name, extra, v) in values {
        let mut labels = series.clone();
        labels.extend(extra.iter().cloned());
        match v {
            Some(v) => m.registry.set(name, help_of(name), labels, *v),
            None => m.registry.remove(name, &labels),
        }
    }
}

fn help_of(name: &str) -> &'static str {
    QUALITY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .unwrap_or_else(|| help(name))
}

/// A quality row.
pub fn quality(m: &mut Metrics, r: &QualityRow, diff: isize, ctx: &Format) {
    if diff <= 0 || r.status != Status::Final {
        return;
    }
    let mut series = window_labels(ctx, &r.key.win);
    series.push(("segment", r.key.segment.to_string()));
    series.push(("model_version", r.key.model.to_string()));
    let values = [
        (QUALITY[0].0, vec![], r.accuracy()),
        (QUALITY[1].0, vec![], r.log_loss()),
        (QUALITY[2].0, vec![], r.brier()),
        (QUALITY[3].0, vec![], r.auc().0),
        (QUALITY[4].0, vec![], Some(r.agg.count as f64)),
    ];
    newest(m, "quality", series, r.key.win.end, &values);
}

/// A label-health row.
pub fn labels(m: &mut Metrics, r: &LabelRow, diff: isize, ctx: &Format) {
    if diff <= 0 || r.status != Status::Final {
        return;
    }
    let a = &r.agg;
    let mut series = window_labels(ctx, &r.key.win);
    series.push(("segment", r.key.segment.to_string()));
    let p = a.percentiles();
    let q = |q: &str, v: Option<u64>| {
        (
            LABEL_LATENCY,
            vec![("percentile", q.to_string())],
            v.map(|v| v as f64 / 1000.0),
        )
    };
    let values = [
        (LABEL_COMPLETENESS, vec![], a.labeled_fraction()),
        (LABEL_EVENTS, vec![], Some(a.events as f64)),
        (
            LABEL_UNLABELED,
            vec![],
            Some((a.events - a.within_horizon) as f64),
        ),
        (LABEL_ORPHANS, vec![], Some(a.orphans as f64)),
        q("0.5", p.map(|p| p.p50)),
        q("0.95", p.map(|p| p.p95)),
        q("0.99", p.map(|p| p.p99)),
        q("1", p.map(|p| p.max)),
    ];
    newest(m, "label_health", series, r.key.win.end, &values);
}

/// A shadow row: the online model against a production model. Shadow rows have no final
/// status, so the gauges follow the newest window as it fills.
pub fn shadow(m: &mut Metrics, r: &crate::dataflow::learn::ShadowRow, diff: isize, ctx: &Format) {
    if diff <= 0 || r.count <= 0 {
        return;
    }
    let mut series = window_labels(ctx, &r.key.win);
    series.push(("segment", r.key.segment.to_string()));
    series.push(("model_version", r.key.model.to_string()));
    let n = r.count as f64;
    let values = [
        (SHADOW_AGREEMENT, vec![], Some(r.agree as f64 / n)),
        (
            SHADOW_DIVERGENCE,
            vec![],
            Some(crate::records::from_micro(r.abs_diff) / n),
        ),
        (SHADOW_EVENTS, vec![], Some(n)),
    ];
    newest(m, "shadow", series, r.key.win.end, &values);
}

/// A drift row.
pub fn drift(m: &mut Metrics, r: &DriftRow, diff: isize, ctx: &Format) {
    let Some(d) = &ctx.drift else { return };
    if diff <= 0 || r.status != Status::Final {
        return;
    }
    let stats = r.stats(d);
    let mut series = window_labels(ctx, &r.key.win);
    series.push(("segment", r.key.segment.to_string()));
    series.push(("feature", d.features[r.key.feature as usize].name.clone()));
    series.push(("model_version", r.key.model.to_string()));
    let mut values: Vec<(&'static str, Labels, Option<f64>)> = DRIFT_STATS
        .iter()
        .map(|s| {
            (
                DRIFT,
                vec![("statistic", s.name().to_string())],
                stats.get(*s),
            )
        })
        .collect();
    values.push((DRIFT_COUNT, vec![], Some(stats.count as f64)));
    newest(m, "drift", series, r.key.win.end, &values);
}

/// An entity-features row: freshness of the newest final window's entities.
pub fn features(m: &mut Metrics, r: &FeatureRow, diff: isize, ctx: &Format) {
    // A retirement retracts the final row and adds a retired one with the same value, which is
    // counted back in; retired rows are never retracted.
    match r.status {
        Status::Final => {}
        Status::Retired if diff > 0 => {}
        _ => return,
    }
    let family = ctx.windows.name(&r.key.win).to_string();
    let end = r.key.win.end;
    let (newest, values) = m.freshness.entry(family.clone()).or_default();
    if end < *newest {
        return;
    }
    if end > *newest {
        *newest = end;
        values.clear();
    }
    let f = end.saturating_sub(r.agg.last_time);
    let n = values.entry(f).or_insert(0);
    *n += diff as i64;
    // A retraction of a row this process never counted (a restart) leaves nothing behind.
    if *n <= 0 {
        values.remove(&f);
    }
    let (lo, hi) = (
        values.keys().next().copied(),
        values.keys().next_back().copied(),
    );
    for (stat, v) in [("min", lo), ("max", hi)] {
        let labels = vec![("window", family.clone()), ("stat", stat.to_string())];
        match v {
            Some(v) => m
                .registry
                .set(FRESHNESS, help(FRESHNESS), labels, v as f64 / 1000.0),
            None => m.registry.remove(FRESHNESS, &labels),
        }
    }
}

/// An ingest row.
pub fn ingest(m: &mut Metrics, r: &IngestRow, diff: isize) {
    if diff <= 0 {
        return;
    }
    let labels_only = r.stream == crate::schema::Stream::Labels.name();
    for (outcome, v) in [
        ("read", Some(r.read)),
        ("accepted", Some(r.accepted)),
        ("dead_lettered", Some(r.dead_lettered)),
        ("duplicate", Some(r.duplicates)),
        ("too_late", labels_only.then_some(r.too_late)),
        ("orphaned", labels_only.then_some(r.orphaned)),
    ] {
        let Some(v) = v else { continue };
        let labels = vec![("stream", r.stream.clone()), ("outcome", outcome.into())];
        m.registry.set_total(INGEST, help(INGEST), labels, v as f64);
    }
    if labels_only {
        let ratio = r.too_late as f64 / r.accepted.max(1) as f64;
        m.registry
            .set(TOO_LATE_RATIO, help(TOO_LATE_RATIO), vec![], ratio);
        let hold = r.retention_to_hold_ms.unwrap_or(0) as f64 / 1000.0;
        m.registry
            .set(RETENTION_TO_HOLD, help(RETENTION_TO_HOLD), vec![], hold);
    }
}

/// A dead letter.
pub fn dead_letter(m: &mut Metrics, r: &DeadLetter, diff: isize) {
    let reason = crate::records::reason_class(&r.reason);
    // Schema fields are a bounded set; an unknown field's name comes from the input.
    let field = match (r.field.is_empty(), reason) {
        (true, _) => "(record)".to_string(),
        (_, "unknown_field") => "(unknown)".to_string(),
        _ => r.field.clone(),
    };
    let labels = vec![
        ("stream", r.stream.clone()),
        ("field", field),
        ("reason", reason.to_string()),
    ];
    m.registry.add(DEAD, help(DEAD), labels, diff as f64);
}

/// A drift detection.
pub fn detection(m: &mut Metrics, r: &DetectionRow, diff: isize, ctx: &Format) {
    let Some(d) = &ctx.drift else { return };
    let name = d.detectors[r.detector as usize].name();
    let labels = vec![("detector", name.to_string())];
    m.registry
        .add(DETECTIONS, help(DETECTIONS), labels, diff as f64);
}

/// A published model version.
pub fn version(m: &mut Metrics, _r: &VersionRow, diff: isize) {
    m.registry
        .add(VERSIONS, help(VERSIONS), vec![], diff as f64);
}

/// A learner decision.
pub fn decision(m: &mut Metrics, r: &DecisionRow, diff: isize) {
    let labels = vec![("action", r.action.name().to_string())];
    m.registry
        .add(DECISIONS, help(DECISIONS), labels, diff as f64);
    match (r.action, diff > 0) {
        // A rollback pauses updates as well.
        (Action::Pause | Action::Rollback, true) => {
            m.registry.set(PAUSED, help(PAUSED), vec![], 1.0)
        }
        (Action::Resume, true) => m.registry.set(PAUSED, help(PAUSED), vec![], 0.0),
        _ => {}
    }
}

/// A quarantined example.
pub fn quarantine(m: &mut Metrics, r: &QuarantineRow, diff: isize) {
    let defence = r.reason.split(':').next().unwrap_or("").to_string();
    let labels = vec![("defence", defence)];
    m.registry
        .add(QUARANTINED, help(QUARANTINED), labels, diff as f64);
}

/// Alerts already firing when a resumed run starts (its state as of the commit point).
pub fn seed_alerts(
    m: &mut Metrics,
    state: &crate::alerts::AlertState,
    rules: &[crate::alerts::Rule],
) {
    for (rule, n) in state.firing_by_rule() {
        let rule = &rules[rule as usize];
        let severity = format!("{:?}", rule.severity);
        m.firing.insert((rule.name.clone(), severity.clone()), n);
        let labels = vec![("rule", rule.name.clone()), ("severity", severity)];
        m.registry
            .set(ALERTS_FIRING, help(ALERTS_FIRING), labels, n as f64);
    }
}

/// An alert state change.
pub fn alert(m: &mut Metrics, r: &AlertEvent, diff: isize, ctx: &Format) {
    let rule = &ctx.alerts[r.rule as usize];
    let severity = format!("{:?}", rule.severity);
    let state = if r.firing { "firing" } else { "resolved" };
    let labels = vec![
        ("rule", rule.name.clone()),
        ("severity", severity.clone()),
        ("state", state.to_string()),
    ];
    m.registry
        .add(ALERT_EVENTS, help(ALERT_EVENTS), labels, diff as f64);
    let n = m
        .firing
        .entry((rule.name.clone(), severity.clone()))
        .or_insert(0);
    *n += if r.firing {
        diff as i64
    } else {
        -(diff as i64)
    };
    let n = *n;
    let labels = vec![("rule", rule.name.clone()), ("severity", severity.clone())];
    m.registry
        .set(ALERTS_FIRING, help(ALERTS_FIRING), labels, n as f64);
    if let (Some(out), true) = (&m.alerts_out, diff > 0) {
        out.send(alert_notice(r, &severity, ctx));
    }
}

/// What Alertmanager receives of an alert record: its identity as labels, the rest as
/// annotations.
fn alert_notice(r: &AlertEvent, severity: &str, ctx: &Format) -> crate::alerts::deliver::Notice {
    let rule = &ctx.alerts[r.rule as usize];
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("alertname".to_string(), rule.name.clone());
    labels.insert("severity".to_string(), severity.to_string());
    labels.insert("segment".to_string(), r.segment.clone());
    for (k, v) in [("model_version", &r.model), ("feature", &r.feature)] {
        if !v.is_empty() {
            labels.insert(k.to_string(), v.clone());
        }
    }
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("summary".to_string(), r.message(ctx));
    annotations.insert("runbook_url".to_string(), rule.runbook.clone());
    let number = |bits: u64| {
        let v = f64::from_bits(bits);
        if v.is_finite() {
            format!("{v}")
        } else {
            String::new()
        }
    };
    annotations.insert("value".to_string(), number(r.value));
    annotations.insert("bound".to_string(), number(r.bound));
    annotations.insert(
        "window".to_string(),
        format!(
            "{} [{}, {})",
            ctx.windows.name(&r.win),
            crate::runtime::iso_time(r.win.start),
            crate::runtime::iso_time(r.win.end)
        ),
    );
    annotations.retain(|_, v| !v.is_empty());
    crate::alerts::deliver::Notice {
        firing: r.firing,
        labels,
        annotations,
    }
}

/// The lines of `output` below `ts` are reflected; series that ended are dropped (once per
/// sink activation rather than per row: eviction walks every series of the output).
pub fn written_below(m: &mut Metrics, output: &str, ts: u64) {
    match output {
        "quality" => m.evict("quality", &QUALITY.map(|q| q.0)),
        "label_health" => m.evict(
            "label_health",
            &[
                LABEL_COMPLETENESS,
                LABEL_EVENTS,
                LABEL_UNLABELED,
                LABEL_ORPHANS,
                LABEL_LATENCY,
            ],
        ),
        "drift" => m.evict("drift", &[DRIFT, DRIFT_COUNT]),
        "shadow" => m.evict(
            "shadow",
            &[SHADOW_AGREEMENT, SHADOW_DIVERGENCE, SHADOW_EVENTS],
        ),
        _ => {}
    }
    let labels = vec![("output", output.to_string())];
    m.registry
        .set(WRITTEN_BELOW, help(WRITTEN_BELOW), labels, timestamp(ts));
}

/// A timely timestamp (event-time ms) as a sample value in seconds: `u64::MAX` (the end of
/// input) is `+Inf`.
pub fn timestamp(ts: u64) -> f64 {
    if ts == u64::MAX {
        f64::INFINITY
    } else {
        ts as f64 / 1000.0
    }
}
