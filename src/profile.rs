//! Time spent in each dataflow operator, per worker, from timely's schedule log: where a run's
//! time goes, by operator name (`TIDEMARK_OPERATOR_PROFILE=1` on any command that runs a job).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};

/// The environment variable that turns the profile on.
pub const ENV: &str = "TIDEMARK_OPERATOR_PROFILE";

/// Scheduling time per operator of one worker.
#[derive(Debug, Default)]
pub struct OperatorProfile {
    names: BTreeMap<usize, (Vec<usize>, String)>,
    started: BTreeMap<usize, Duration>,
    total: BTreeMap<usize, (Duration, u64)>,
}

impl OperatorProfile {
    /// Subscribes to `worker`'s timely log if the profile is on.
    pub fn register(worker: &mut timely::worker::Worker) -> Option<Rc<RefCell<OperatorProfile>>> {
        std::env::var_os(ENV)?;
        let profile = Rc::new(RefCell::new(OperatorProfile::default()));
        let p = profile.clone();
        let mut registry = worker.log_register()?;
        registry.insert::<TimelyEventBuilder, _>("timely", move |_, data| {
            let Some(events) = data.as_ref() else { return };
            let mut p = p.borrow_mut();
            for (at, event) in events {
                match event {
                    TimelyEvent::Operates(o) => {
                        p.names.insert(o.id, (o.addr.clone(), o.name.clone()));
                    }
                    TimelyEvent::Schedule(s) => match s.start_stop {
                        StartStop::Start => {
                            p.started.insert(s.id, *at);
                        }
                        StartStop::Stop => {
                            if let Some(from) = p.started.remove(&s.id) {
                                let e = p.total.entry(s.id).or_default();
                                e.0 += at.saturating_sub(from);
                                e.1 += 1;
                            }
                        }
                    },
                    _ => {}
                }
            }
        });
        Some(profile)
    }

    /// The operators (not scopes holding others) by time spent, most first, as text lines.
    pub fn report(&self, worker: usize) -> String {
        let scopes: std::collections::BTreeSet<&[usize]> = self
            .names
            .values()
            .filter(|(a, _)| a.len() > 1)
            .map(|(a, _)| &a[..a.len() - 1])
            .collect();
        let mut rows: Vec<(Duration, u64, &str)> = self
            .total
            .iter()
            .filter_map(|(id, (d, n))| {
                let (addr, name) = self.names.get(id)?;
                (!scopes.contains(addr.as_slice())).then_some((*d, *n, name.as_str()))
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        let all: Duration = rows.iter().map(|r| r.0).sum();
        let mut out = format!(
            "operator time, worker {worker}: {:.2} s\n",
            all.as_secs_f64()
        );
        for (d, n, name) in rows.iter().take(30) {
            out.push_str(&format!(
                "  {:>8.3} s {:>5.1}% {:>8} calls  {name}\n",
                d.as_secs_f64(),
                100.0 * d.as_secs_f64() / all.as_secs_f64().max(1e-9),
                n
            ));
        }
        out
    }
}
