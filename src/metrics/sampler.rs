//! The run loop's own measurements: watermark and source lag (wall clock), update latency,
//! replay-buffer commits.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Shared;
use crate::schema::Stream;
use crate::sources::Progress;

const LATENCY: &str = "tidemark_update_latency_seconds";
const LATENCY_HELP: &str = "From this process's sources' watermark passing a timestamp to every changelog line stamped below it being written (wall clock; lines are stamped at emit boundaries).";
const LATENCY_BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const COMMIT: &str = "tidemark_replay_commit_duration_seconds";
const COMMIT_HELP: &str = "Time to commit a replay-buffer boundary (segments, state, manifest).";
const COMMIT_BOUNDS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Declares the run loop's histograms, so a scrape shows them before their first observation.
pub fn declare(r: &mut super::Registry) {
    r.declare(LATENCY, super::Kind::Histogram, LATENCY_HELP);
    r.declare(COMMIT, super::Kind::Histogram, COMMIT_HELP);
}

/// Samples the process's progress into the metrics (worker 0 of process 0).
pub struct Sampler {
    shared: Shared,
    next: Instant,
    last_input: u64,
    /// Input frontiers not yet written below, with when they were first seen.
    pending: VecDeque<(u64, Instant)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Sampler {
    /// A sampler writing into `shared`.
    pub fn new(shared: Shared) -> Sampler {
        shared.lock().health.started = Some(Instant::now());
        Sampler {
            shared,
            next: Instant::now(),
            last_input: 0,
            pending: VecDeque::new(),
        }
    }

    /// One loop iteration: `watermark` is the output probe's frontier, `written_below` the
    /// sinks' least written timestamp.
    pub fn step(&mut self, progress: &Progress, watermark: u64, written_below: u64) {
        let now = Instant::now();
        let input = {
            let a = progress.active.lock().unwrap_or_else(|e| e.into_inner());
            a.values().copied().min().unwrap_or(0)
        };
        if input > self.last_input && input != u64::MAX {
            self.pending.push_back((input, now));
            self.last_input = input;
        }
        let mut done = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|(f, _)| *f <= written_below)
        {
            let (_, at) = self.pending.pop_front().expect("checked");
            done.push(now.duration_since(at).as_secs_f64());
        }
        if done.is_empty() && now < self.next {
            return;
        }
        self.next = now + Duration::from_millis(250);
        let mut m = self.shared.lock();
        for d in done {
            m.registry
                .observe(LATENCY, LATENCY_HELP, &LATENCY_BOUNDS, vec![], d);
        }
        let wall = now_ms();
        if watermark != u64::MAX {
            m.registry.set(
                "tidemark_watermark_timestamp_seconds",
                "The job's event-time watermark (output frontier).",
                vec![],
                watermark as f64 / 1000.0,
            );
            m.registry.set(
                "tidemark_watermark_lag_seconds",
                "Wall clock minus the event-time watermark.",
                vec![],
                wall.saturating_sub(watermark) as f64 / 1000.0,
            );
        }
        m.registry.set_total(
            "tidemark_cardinality_folded_total",
            "Pane updates of segment values or entities beyond the [limits] caps, folded into __other__.",
            vec![],
            progress.folded.load(Ordering::Relaxed) as f64,
        );
        for s in Stream::ALL {
            let labels = vec![("stream", s.name().to_string())];
            let read = progress.stream_records[s.index()].load(Ordering::Relaxed);
            m.registry.set_total(
                "tidemark_source_records_read_total",
                "Records read from the stream's sources by this process (wall-clock rate with rate()).",
                labels.clone(),
                read as f64,
            );
            let newest = progress.stream_newest[s.index()].load(Ordering::Relaxed);
            if newest > 0 {
                m.registry.set(
                    "tidemark_source_lag_seconds",
                    "Wall clock minus the newest record time read from the stream.",
                    labels,
                    wall.saturating_sub(newest) as f64 / 1000.0,
                );
            }
        }
    }

    /// The dataflow has completed or stopped: the job is no longer ready.
    pub fn finished(&mut self) {
        self.shared.lock().health.finished = true;
    }

    /// A replay-buffer commit that took `took`; `manifest` is the buffer after it.
    pub fn commit(&mut self, took: Duration, manifest: &crate::replay::manifest::Manifest) {
        let mut m = self.shared.lock();
        m.health.last_commit = Some(Instant::now());
        m.registry.observe(
            COMMIT,
            COMMIT_HELP,
            &COMMIT_BOUNDS,
            vec![],
            took.as_secs_f64(),
        );
        m.registry.add(
            "tidemark_replay_commits_total",
            "Replay-buffer commits by this run.",
            vec![],
            1.0,
        );
        m.registry.set(
            "tidemark_replay_buffer_bytes",
            "Bytes of the committed replay-buffer segments.",
            vec![],
            manifest.segments.iter().map(|s| s.bytes).sum::<u64>() as f64,
        );
        m.registry.set(
            "tidemark_replay_committed_timestamp_seconds",
            "The replay buffer's commit point: every record below it is durable.",
            vec![],
            super::observe::timestamp(manifest.committed),
        );
    }
}
