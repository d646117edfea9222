//! Delivery of alert records to Prometheus Alertmanager's v2 API (`tidemark run
//! --alertmanager URL`), as Prometheus delivers its own alerts.
//!
//! Semantics: every alert record a live run writes is a notice: `firing` makes the alert
//! (identified by its labels: `alertname` = rule, `severity`, `job`, `segment`,
//! `model_version`, `feature`) active, `resolved` ends it. Active alerts are posted at once and
//! re-sent every resend interval with `endsAt` four intervals ahead (so Alertmanager resolves
//! them by itself if tidemark dies); a resolved alert is posted with `endsAt` = its resolution
//! time on the next three sends, then forgotten. An Alertmanager that restarted (it keeps alerts
//! in memory only) therefore has every still-firing alert again within one interval.
//!
//! Time: wall clock (Alertmanager's `startsAt`/`endsAt` are wall-clock times; the window the
//! record is about is in its annotations). State: the active and recently resolved alerts.
//! Failure modes: a failed post is counted, logged, and retried with backoff (1 s doubling to the
//! resend interval); nothing reaches the dataflow, which hands notices over a channel.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::metrics::{Kind, Shared};

/// One alert record to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Firing (true) or resolved.
    pub firing: bool,
    /// Its identity (without `job`, which the deliverer adds).
    pub labels: BTreeMap<String, String>,
    /// Summary, runbook, value, bound, window.
    pub annotations: BTreeMap<String, String>,
}

enum Msg {
    Notice(Notice),
    Finish(Duration),
}

/// Hands notices to the deliverer.
#[derive(Debug, Clone)]
pub struct Outbox(Sender<Msg>);

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl Outbox {
    /// Queues one notice (never blocks).
    pub fn send(&self, n: Notice) {
        let _ = self.0.send(Msg::Notice(n));
    }
}

/// Where delivery stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The Alertmanager.
    pub url: String,
    /// Alerts posted (each alert of each successful post).
    pub posted: u64,
    /// Alerts active at the end.
    pub firing: usize,
    /// Failed posts.
    pub failures: u64,
    /// The last failure, if the last post failed.
    pub last_error: Option<String>,
}

/// The running deliverer.
pub struct Deliverer {
    tx: Sender<Msg>,
    thread: std::thread::JoinHandle<Status>,
}

const SENT: &str = "tidemark_alertmanager_alerts_sent_total";
const SENT_HELP: &str = "Alerts posted to Alertmanager (each alert of each successful post).";
const FAILED: &str = "tidemark_alertmanager_failures_total";
const FAILED_HELP: &str = "Failed posts to Alertmanager (each is retried).";
const ACTIVE: &str = "tidemark_alertmanager_active_alerts";
const ACTIVE_HELP: &str = "Alerts tidemark holds active (firing) for Alertmanager.";

impl Deliverer {
    /// Starts delivering to the Alertmanager at `url` for job `job`, re-sending every `resend`;
    /// progress goes to `metrics`.
    pub fn start(url: &str, job: &str, resend: Duration, metrics: Option<Shared>) -> Deliverer {
        let (tx, rx) = channel();
        if let Some(m) = &metrics {
            let mut m = m.lock();
            m.registry.declare(SENT, Kind::Counter, SENT_HELP);
            m.registry.declare(FAILED, Kind::Counter, FAILED_HELP);
            m.registry.declare(ACTIVE, Kind::Gauge, ACTIVE_HELP);
        }
        let d = Delivery {
            url: url.trim_end_matches('/').to_string(),
            job: job.to_string(),
            resend: resend.max(Duration::from_millis(100)),
            agent: ureq::Agent::config_builder()
                .timeout_connect(Some(Duration::from_secs(5)))
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            metrics,
            active: BTreeMap::new(),
            status: Status {
                url: url.to_string(),
                ..Default::default()
            },
        };
        let thread = std::thread::Builder::new()
            .name("tidemark-alertmanager".into())
            .spawn(move || d.run(rx))
            .expect("spawning a thread");
        Deliverer { tx, thread }
    }

    /// The outbox the alert sink writes to.
    pub fn outbox(&self) -> Outbox {
        Outbox(self.tx.clone())
    }

    /// Posts what is pending (trying for at most `within`), then stops.
    pub fn finish(self, within: Duration) -> Status {
        let _ = self.tx.send(Msg::Finish(within));
        self.thread.join().unwrap_or_default()
    }
}

/// One alert as tidemark holds it.
struct Active {
    annotations: BTreeMap<String, String>,
    starts_at: SystemTime,
    ends_at: Option<SystemTime>,
    resolved_sends: u32,
}

struct Delivery {
    url: String,
    job: String,
    resend: Duration,
    agent: ureq::Agent,
    metrics: Option<Shared>,
    active: BTreeMap<BTreeMap<String, String>, Active>,
    status: Status,
}

impl Delivery {
    fn run(mut self, rx: Receiver<Msg>) -> Status {
        let mut pending = false;
        let mut next_send = Instant::now() + self.resend;
        let mut backoff = Duration::from_secs(1);
        let mut finish_by: Option<Instant> = None;
        loop {
            let wait = next_send.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Notice(n)) => {
                    self.take(n);
                    pending = true;
                    // Take every notice already queued before posting.
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            Msg::Notice(n) => self.take(n),
                            Msg::Finish(w) => finish_by = Some(Instant::now() + w),
                        }
                    }
                }
                Ok(Msg::Finish(w)) => {
                    finish_by = Some(Instant::now() + w);
                    pending = true;
                }
                Err(RecvTimeoutError::Timeout) => pending = true,
                Err(RecvTimeoutError::Disconnected) => {
                    finish_by = finish_by.or(Some(Instant::now()))
                }
            }
            let now = Instant::now();
            if pending
                && (now >= next_send || self.status.last_error.is_none() || finish_by.is_some())
            {
                match self.post() {
                    Ok(()) => {
                        pending = false;
                        backoff = Duration::from_secs(1);
                        next_send = Instant::now() + self.resend;
                    }
                    Err(e) => {
                        self.status.failures += 1;
                        if self.status.last_error.as_deref() != Some(e.as_str()) {
                            tracing::warn!("Alertmanager: {e}; retrying");
                        }
                        self.status.last_error = Some(e);
                        next_send = Instant::now() + backoff.min(self.resend);
                        backoff = (backoff * 2).min(self.resend);
                    }
                }
                self.publish_metrics();
            }
            if let Some(by) = finish_by {
                if !pending || Instant::now() >= by {
                    self.status.firing = self.firing();
                    return self.status;
                }
                next_send = next_send.min(by);
            }
        }
    }

    fn take(&mut self, n: Notice) {
        let mut labels = n.labels;
        labels.insert("job".into(), self.job.clone());
        let now = SystemTime::now();
        if n.firing {
            let a = self.active.entry(labels).or_insert(Active {
                annotations: BTreeMap::new(),
                starts_at: now,
                ends_at: None,
                resolved_sends: 0,
            });
            if a.ends_at.is_some() {
                // Firing again after a resolution: a new occurrence.
                a.starts_at = now;
                a.ends_at = None;
                a.resolved_sends = 0;
            }
            a.annotations = n.annotations;
        } else if let Some(a) = self.active.get_mut(&labels) {
            if a.ends_at.is_none() {
                a.ends_at = Some(now);
                a.resolved_sends = 0;
            }
            a.annotations = n.annotations;
        }
    }

    fn firing(&self) -> usize {
        self.active.values().filter(|a| a.ends_at.is_none()).count()
    }

    /// Posts every active and recently resolved alert.
    fn post(&mut self) -> Result<(), String> {
        if self.active.is_empty() {
            return Ok(());
        }
        let expires = SystemTime::now() + 4 * self.resend;
        let body: Vec<Value> = self
            .active
            .iter()
            .map(|(labels, a)| {
                json!({
                    "labels": labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(a.ends_at.unwrap_or(expires)),
                })
            })
            .collect();
        let url = format!("{}/api/v2/alerts", self.url);
        let r = self.agent.post(&url).send_json(&body);
        match r {
            Ok(_) => {
                self.status.posted += body.len() as u64;
                self.status.last_error = None;
                for a in self.active.values_mut() {
                    if a.ends_at.is_some() {
                        a.resolved_sends += 1;
                    }
                }
                self.active.retain(|_, a| a.resolved_sends < 3);
                Ok(())
            }
            Err(e) => Err(format!("POST {url}: {e}")),
        }
    }

    fn publish_metrics(&self) {
        if let Some(m) = &self.metrics {
            let mut m = m.lock();
            m.registry
                .set_total(SENT, SENT_HELP, vec![], self.status.posted as f64);
            m.registry
                .set_total(FAILED, FAILED_HELP, vec![], self.status.failures as f64);
            m.registry
                .set(ACTIVE, ACTIVE_HELP, vec![], self.firing() as f64);
        }
    }
}

/// The alerts still firing at the end of an alerts changelog (`alerts.jsonl`), as notices: a
/// resumed run re-sends them, since it does not write again the records below its commit point.
/// Lines that do not parse (a crash's torn last line) are skipped.
pub fn still_firing(changelog: &std::path::Path) -> Vec<Notice> {
    let Ok(text) = std::fs::read_to_string(changelog) else {
        return Vec::new();
    };
    let mut last: BTreeMap<BTreeMap<String, String>, Notice> = BTreeMap::new();
    for line in text.lines() {
        let Ok(r) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let s = |k: &str| r[k].as_str().map(str::to_string);
        let (Some(rule), Some(severity), Some(segment), Some(state)) =
            (s("rule"), s("severity"), s("segment"), s("state"))
        else {
            continue;
        };
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), rule);
        labels.insert("severity".to_string(), severity);
        labels.insert("segment".to_string(), segment);
        for k in ["model_version", "feature"] {
            if let Some(v) = s(k) {
                labels.insert(k.to_string(), v);
            }
        }
        let mut annotations = BTreeMap::new();
        for (k, col) in [("summary", "message"), ("runbook_url", "runbook")] {
            if let Some(v) = s(col) {
                annotations.insert(k.to_string(), v);
            }
        }
        for (k, col) in [("value", "value"), ("bound", "threshold")] {
            if let Some(v) = r[col].as_f64() {
                annotations.insert(k.to_string(), format!("{v}"));
            }
        }
        if let (Some(w), Some(a), Some(b)) = (
            s("window"),
            r["window_start"].as_u64(),
            r["window_end"].as_u64(),
        ) {
            annotations.insert(
                "window".to_string(),
                format!(
                    "{w} [{}, {})",
                    crate::runtime::iso_time(a),
                    crate::runtime::iso_time(b)
                ),
            );
        }
        let firing = state == "firing";
        last.insert(
            labels.clone(),
            Notice {
                firing,
                labels,
                annotations,
            },
        );
    }
    last.into_values().filter(|n| n.firing).collect()
}

/// RFC 3339 with milliseconds, UTC.
fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let s = crate::runtime::iso_time(ms);
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ms % 1000)
}
