//! Prometheus metrics of a running job: the SLIs read off the changelogs as they are written
//! (quality, label health, drift, alerts, model decisions, dead letters, ingest counts), and the
//! process's own measurements (source rates and lag, watermark lag, update latency, replay
//! commits).
//!
//! Changelog-derived gauges describe the newest *final* window of each series (window family,
//! segment, model version or feature); a series whose newest window is older than the job's
//! retention behind its family's newest window is dropped, so label sets stay bounded by the
//! job's configuration. `tidemark_output_written_below_timestamp_seconds{output}` says which changelog
//! timestamps a scrape reflects: exactly the lines below it.

pub mod observe;
pub mod registry;
pub mod sampler;
pub mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use registry::{Kind, Labels, Registry};
pub use sampler::Sampler;
pub use server::Server;

/// Metric state shared by the sinks, the run loop and the endpoint.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Metrics>>);

impl Shared {
    /// New metrics for `job`.
    pub fn new(job: &crate::config::Job) -> Shared {
        let mut m = Metrics {
            retention_ms: job.spec.time.retention_ms,
            ..Default::default()
        };
        m.health.commit_every = std::time::Duration::from_millis(job.segment_ms());
        observe::declare(&mut m.registry, job);
        sampler::declare(&mut m.registry);
        Shared(Arc::new(Mutex::new(m)))
    }

    /// Locks the metrics (a poisoned lock still holds valid metrics).
    pub fn lock(&self) -> MutexGuard<'_, Metrics> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        self.lock().registry.render()
    }

    /// Whether the job is ready: its dataflow runs and the replay buffer committed (or the
    /// dataflow started) less than `max_age` ago, or two commit intervals if longer (a live
    /// job commits about once a segment of event time); otherwise why not.
    pub fn readiness(&self, max_age: std::time::Duration) -> Result<(), String> {
        let m = self.lock();
        let max_age = max_age.max(2 * m.health.commit_every);
        let Some(started) = m.health.started else {
            return Err("not ready: the dataflow has not started".into());
        };
        if m.health.finished {
            return Err("not ready: the dataflow has finished".into());
        }
        let (what, at) = match m.health.last_commit {
            Some(c) => ("last replay-buffer commit", c),
            None => ("dataflow start, and no commit since,", started),
        };
        let age = at.elapsed();
        if age > max_age {
            return Err(format!(
                "not ready: {what} {:.0} s ago (more than {} s)",
                age.as_secs_f64(),
                max_age.as_secs()
            ));
        }
        Ok(())
    }
}

/// What the readiness probe reads: when the dataflow started and last committed.
#[derive(Debug, Default)]
pub struct Health {
    /// When the dataflow began running.
    pub started: Option<std::time::Instant>,
    /// When the replay buffer last committed.
    pub last_commit: Option<std::time::Instant>,
    /// The segment length as wall time: how often a live job commits.
    pub commit_every: std::time::Duration,
    /// The dataflow has completed or stopped.
    pub finished: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Shared")
    }
}

/// The registry and what is needed to keep its changelog gauges on the newest windows.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The metric values.
    pub registry: Registry,
    /// Newest final window end per `(family metric, series labels)`.
    newest: BTreeMap<(&'static str, Labels), u64>,
    /// Newest final window end per `(family metric, window family name)`.
    family_newest: BTreeMap<(&'static str, String), u64>,
    /// Entity freshness values of the newest final window per window family:
    /// `(window end, freshness ms → entities)`.
    freshness: BTreeMap<String, (u64, BTreeMap<u64, i64>)>,
    /// Alerts firing per `(rule, severity)`.
    firing: BTreeMap<(String, String), i64>,
    retention_ms: u64,
    /// What the readiness probe reads.
    pub health: Health,
    /// Where alert records go for Alertmanager (`run --alertmanager`).
    pub alerts_out: Option<crate::alerts::deliver::Outbox>,
}

impl Metrics {
    /// Whether a row of window `end` of `series` is at least as new as the series' newest
    /// (and then records it as the newest).
    pub fn newest_window(&mut self, group: &'static str, series: &Labels, end: u64) -> bool {
        let e = self.newest.entry((group, series.clone())).or_insert(end);
        if end < *e {
            return false;
        }
        *e = end;
        let f = self
            .family_newest
            .entry((group, window_of(series)))
            .or_insert(end);
        *f = (*f).max(end);
        true
    }

    /// Drops the series of `group` whose newest window is more than the retention behind
    /// their family's newest; `gauges` are the families keyed by those series.
    pub fn evict(&mut self, group: &'static str, gauges: &[&'static str]) {
        let retention = self.retention_ms;
        let stale: Vec<Labels> = self
            .newest
            .iter()
            .filter(|((g, _), _)| *g == group)
            .filter(|((_, labels), end)| {
                let newest = self
                    .family_newest
                    .get(&(group, window_of(labels)))
                    .copied()
                    .unwrap_or(0);
                end.saturating_add(retention) < newest
            })
            .map(|((_, l), _)| l.clone())
            .collect();
        for labels in stale {
            self.newest.remove(&(group, labels.clone()));
            for g in gauges {
                let prefix = labels.clone();
                let doomed: Vec<Labels> = self
                    .registry
                    .series(g)
                    .filter(|(l, _)| l.starts_with(&prefix))
                    .map(|(l, _)| l.clone())
                    .collect();
                for l in doomed {
                    self.registry.remove(g, &l);
                }
            }
        }
    }
}

/// The `window` label of a series (empty if it has none).
fn window_of(labels: &Labels) -> String {
    labels
        .iter()
        .find(|(k, _)| *k == "window")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn readiness_allows_two_segments_between_commits() {
        let before = Instant::now() - Duration::from_secs(3);
        let shared = Shared::default();
        {
            let mut m = shared.lock();
            m.health.started = Some(before);
            m.health.last_commit = Some(before);
            m.health.commit_every = Duration::from_secs(1);
        }
        let err = shared.readiness(Duration::from_secs(2)).unwrap_err();
        assert!(err.contains("more than 2 s"), "{err}");
        shared.lock().health.commit_every = Duration::from_secs(2);
        assert_eq!(shared.readiness(Duration::from_secs(2)), Ok(()));
    }
}
