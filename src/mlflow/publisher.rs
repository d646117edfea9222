//! A live job's MLflow publishing: a thread that syncs the local registry to MLflow whenever the
//! job changes it, retrying with backoff while MLflow fails, so that MLflow being down never
//! slows or stops the dataflow.
//!
//! State: what MLflow is known to hold ([`Progress`]). Time: a sync at start (what an earlier
//! run left behind), after every change, and after each backoff (1 s doubling to 60 s) while the
//! last attempt failed. Failure modes: none reach the job; failures are counted, logged once per
//! kind, and the backlog (versions and aliases MLflow lacks) is a metric and in the summary.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::sync::{sync, Progress};
use super::Target;
use crate::metrics::{Kind, Shared};
use crate::registry::Registry;

/// Wakes the publisher: the local registry changed.
#[derive(Clone, Default)]
pub struct Notifier(Arc<(Mutex<Signal>, Condvar)>);

#[derive(Default)]
struct Signal {
    changed: bool,
    /// Asked to finish: give up once this long has passed without a successful sync.
    finish_within: Option<Duration>,
    finish_by: Option<Instant>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

impl Notifier {
    /// Says the local registry changed.
    pub fn notify(&self) {
        let (m, cv) = &*self.0;
        m.lock().unwrap_or_else(|e| e.into_inner()).changed = true;
        cv.notify_all();
    }
}

/// Where MLflow publishing stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The registered model and server, for messages.
    pub target: String,
    /// Versions and aliases of the local registry MLflow lacks.
    pub backlog: u64,
    /// Versions this run created in MLflow.
    pub created: Vec<String>,
    /// Alias changes this run made.
    pub moved: Vec<String>,
    /// The aliases as MLflow was last known to hold them: (alias, tidemark version).
    pub aliases: Vec<(&'static str, Option<String>)>,
    /// Failed attempts.
    pub failures: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The running publisher.
pub struct Publisher {
    notifier: Notifier,
    thread: std::thread::JoinHandle<Status>,
}

const BACKLOG: &str = "tidemark_mlflow_backlog";
const FAILURES: &str = "tidemark_mlflow_failures_total";
const PUBLISHED: &str = "tidemark_mlflow_published_versions_total";
const BACKLOG_HELP: &str =
    "Versions and aliases of the local registry not yet in MLflow (0: MLflow is up to date).";
const FAILURES_HELP: &str = "Failed attempts to publish to MLflow (each is retried).";
const PUBLISHED_HELP: &str = "Model versions this run created in MLflow.";

impl Publisher {
    /// Starts publishing the registry in `dir` to `target`; progress goes to `metrics`.
    pub fn start(dir: PathBuf, target: Target, metrics: Option<Shared>) -> Publisher {
        let notifier = Notifier::default();
        if let Some(m) = &metrics {
            let mut m = m.lock();
            m.registry.declare(BACKLOG, Kind::Gauge, BACKLOG_HELP);
            m.registry.declare(FAILURES, Kind::Counter, FAILURES_HELP);
            m.registry.declare(PUBLISHED, Kind::Counter, PUBLISHED_HELP);
        }
        let n = notifier.clone();
        let thread = std::thread::Builder::new()
            .name("tidemark-mlflow".into())
            .spawn(move || publish(dir, target, metrics, n))
            .expect("spawning a thread");
        Publisher { notifier, thread }
    }

    /// The notifier the job calls after each registry change.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// Publishes what is left and stops: once MLflow is up to date, or once `within` has
    /// passed without a successful sync; returns where it stands.
    pub fn finish(self, within: Duration) -> Status {
        {
            let (m, cv) = &*self.notifier.0;
            let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
            s.finish_within = Some(within);
            s.finish_by = Some(Instant::now() + within);
            s.changed = true;
            cv.notify_all();
        }
        self.thread.join().unwrap_or_default()
    }
}

fn publish(dir: PathBuf, target: Target, metrics: Option<Shared>, n: Notifier) -> Status {
    let mut status = Status {
        target: format!(
            "registered model {:?} at {}",
            target.registered_model,
            target.client.base()
        ),
        ..Default::default()
    };
    let mut progress = Progress::default();
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let (registry, result) = match Registry::existing(&dir) {
            Ok(reg) => {
                if let Err(e) = target.remember(&dir) {
                    tracing::warn!("{e}: operators' registry commands will not update MLflow");
                }
                let r = sync(&reg, &target, &mut progress).map_err(|e| e.to_string());
                (Some(reg), r)
            }
            // The job creates the registry when it starts; nothing to publish before.
            Err(_) => (None, Ok(())),
        };
        status.created = progress.created.clone();
        status.moved = progress.moved.clone();
        status.aliases = progress
            .aliases
            .iter()
            .map(|(a, v)| (*a, v.clone()))
            .collect();
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!("MLflow publishing works again ({})", status.target);
                }
                failing = false;
                status.last_error = None;
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                status.failures += 1;
                if !failing || status.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("MLflow publishing failed, retrying: {e}");
                }
                failing = true;
                status.last_error = Some(e);
            }
        }
        status.backlog = registry
            .as_ref()
            .and_then(|r| progress.backlog(r).ok())
            .unwrap_or(status.backlog);
        if let Some(m) = &metrics {
            let mut m = m.lock();
            m.registry
                .set(BACKLOG, BACKLOG_HELP, vec![], status.backlog as f64);
            m.registry
                .set_total(FAILURES, FAILURES_HELP, vec![], status.failures as f64);
            m.registry.set_total(
                PUBLISHED,
                PUBLISHED_HELP,
                vec![],
                status.created.len() as f64,
            );
        }
        // Wait for a change, the backoff, or the end.
        let (lock, cv) = &*n.0;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let (false, Some(within)) = (failing, s.finish_within) {
            // MLflow answers: a long backlog keeps being published.
            s.finish_by = Some(Instant::now() + within);
        }
        if let Some(by) = s.finish_by {
            if (!failing && !s.changed) || Instant::now() >= by {
                return status;
            }
        }
        // While failing, a change waits for the backoff too; only the end cuts it short.
        if failing || !s.changed {
            let mut wait = if failing {
                backoff
            } else {
                Duration::from_secs(3600)
            };
            if let Some(by) = s.finish_by {
                wait = wait.min(by.saturating_duration_since(Instant::now()));
            }
            s = cv
                .wait_timeout_while(s, wait, |s| {
                    if failing {
                        !(s.changed && s.finish_by.is_some())
                    } else {
                        !s.changed
                    }
                })
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if failing {
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
        s.changed = false;
    }
}
