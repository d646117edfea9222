//! The alert state machine: final windows' values in, firing and resolved events out.
//!
//! An alert is one rule on one series (window family, segment, model version or feature). Each
//! window of the series is evaluated once, in window order: when it becomes final with at least
//! `min_count` examples (or when an amendment first brings a final window to `min_count`). Later
//! amendments of a window (late labels) update the baseline but are not evaluated again, so an
//! alert cannot flap on a window's value wandering around the bound. The alert fires when an
//! evaluation breaches and resolves when a later window's does not. The state is a pure function
//! of the observations seen, so it can be snapshotted and resumed exactly.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::spec::{Condition, Rule};
use crate::dataflow::windows::Win;

/// One final window's value of one rule's metric.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Observation {
    /// Index of the rule.
    pub rule: u16,
    /// The segment.
    pub segment: String,
    /// Model version (quality and score drift), empty otherwise.
    pub model: String,
    /// Drift feature, empty otherwise.
    pub feature: String,
    /// The window.
    pub win: Win,
    /// The metric's value, as `f64` bits.
    pub value: u64,
    /// Examples (or events, or values) in the window.
    pub count: u64,
}

/// A change of an alert's state: an output row of the `alerts` changelog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Index of the rule.
    pub rule: u16,
    /// The segment.
    pub segment: String,
    /// Model version, or empty.
    pub model: String,
    /// Drift feature, or empty.
    pub feature: String,
    /// The window whose evaluation changed the state (fields in this order so that events of
    /// one timestamp sort the way they were evaluated).
    pub win: Win,
    /// Firing (true) or resolved (false).
    pub firing: bool,
    /// The value evaluated (a burn rule: the smallest burn rate of its families), `f64` bits.
    pub value: u64,
    /// The bound it was compared with, `f64` bits.
    pub bound: u64,
    /// The baseline of a relative rule, `f64` bits.
    pub baseline: Option<u64>,
    /// Examples in the window.
    pub count: u64,
}

/// One evaluated window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Seen {
    win: Win,
    value: f64,
    count: u64,
}

/// One alert's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Alert {
    firing: bool,
    /// The newest evaluated window.
    current: Option<Seen>,
    /// Evaluated windows before it, oldest first (relative rules).
    history: VecDeque<Seen>,
    /// The newest evaluated window per family (burn-rate rules).
    families: BTreeMap<u16, Seen>,
}

/// Which alert an observation belongs to: rule, family (`u16::MAX` for burn-rate rules, whose
/// families share one alert), segment, model, feature.
type Key = (u16, u16, String, String, String);

/// The state of every alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Repr", into = "Repr")]
pub struct AlertState {
    alerts: BTreeMap<Key, Alert>,
    /// The newest window end observed per (rule, family key), evaluable or not.
    newest: BTreeMap<(u16, u16), u64>,
}

/// [`AlertState`] as JSON (whose map keys must be strings).
#[derive(Serialize, Deserialize)]
struct Repr {
    alerts: Vec<(Key, Alert)>,
    newest: Vec<((u16, u16), u64)>,
}

impl From<Repr> for AlertState {
    fn from(r: Repr) -> Self {
        AlertState {
            alerts: r.alerts.into_iter().collect(),
            newest: r.newest.into_iter().collect(),
        }
    }
}

impl From<AlertState> for Repr {
    fn from(s: AlertState) -> Self {
        Repr {
            alerts: s.alerts.into_iter().collect(),
            newest: s.newest.into_iter().collect(),
        }
    }
}

impl AlertState {
    /// Alerts firing now, per rule index.
    pub fn firing_by_rule(&self) -> BTreeMap<u16, i64> {
        let mut out = BTreeMap::new();
        for ((rule, ..), a) in &self.alerts {
            if a.firing {
                *out.entry(*rule).or_insert(0) += 1;
            }
        }
        out
    }

    /// Forgets alerts whose series has had no evaluated window for longer than `retention`
    /// behind the newest window of their rule and family (a segment or model version that
    /// stopped): a firing one resolves, with no bound. Keeps the state bounded.
    pub fn expire(&mut self, retention: u64, out: &mut Vec<AlertEvent>) {
        let newest = &self.newest;
        let mut ended = Vec::new();
        for (key, a) in &self.alerts {
            let last = a
                .current
                .iter()
                .chain(a.families.values())
                .max_by_key(|s| s.win.end);
            let Some(last) = last else { continue };
            let top = newest.get(&(key.0, key.1)).copied().unwrap_or(0);
            if last.win.end.saturating_add(retention) < top {
                ended.push((key.clone(), a.firing, *last));
            }
        }
        for (key, firing, last) in ended {
            self.alerts.remove(&key);
            if firing {
                let (rule, _, segment, model, feature) = key;
                out.push(AlertEvent {
                    rule,
                    segment,
                    model,
                    feature,
                    win: last.win,
                    firing: false,
                    value: last.value.to_bits(),
                    bound: f64::NAN.to_bits(),
                    baseline: None,
                    count: last.count,
                });
            }
        }
    }

    /// Evaluates one observation; a state change is pushed to `out`.
    pub fn observe(&mut self, rules: &[Rule], o: &Observation, out: &mut Vec<AlertEvent>) {
        let rule = &rules[o.rule as usize];
        let value = f64::from_bits(o.value);
        let seen = Seen {
            win: o.win,
            value,
            count: o.count,
        };
        let family = match rule.condition {
            Condition::Burn { .. } => u16::MAX,
            _ => o.win.family,
        };
        let newest = self.newest.entry((o.rule, family)).or_insert(0);
        *newest = (*newest).max(o.win.end);
        if o.count < rule.min_count {
            return;
        }
        let key = (
            o.rule,
            family,
            o.segment.clone(),
            o.model.clone(),
            o.feature.clone(),
        );
        let alert = self.alerts.entry(key).or_default();
        let (breach, shown, bound, baseline) = match rule.condition {
            Condition::Threshold { above, below } => {
                if !alert.advance(seen, 0) {
                    return;
                }
                let over = above.filter(|a| value > *a);
                let under = below.filter(|b| value < *b);
                let bound = over.or(under).or(above).or(below).unwrap_or(f64::NAN);
                (over.is_some() || under.is_some(), value, bound, None)
            }
            Condition::Relative { change, windows } => {
                if !alert.advance(seen, windows as usize) {
                    return;
                }
                if alert.history.len() < windows as usize {
                    return;
                }
                // Count-weighted, summed oldest first: the same bits on every run.
                let (sum, n) = alert.history.iter().fold((0.0, 0u64), |(s, n), h| {
                    (s + h.value * h.count as f64, n + h.count)
                });
                let base = sum / n as f64;
                let bound = base * (1.0 + change);
                let breach = if change < 0.0 {
                    value < bound
                } else {
                    value > bound
                };
                (breach, value, bound, Some(base))
            }
            Condition::Burn { objective, factor } => {
                match alert.families.get_mut(&o.win.family) {
                    Some(e) if seen.win.end < e.win.end => return,
                    Some(e) if seen.win.end == e.win.end => {
                        *e = seen;
                        return;
                    }
                    _ => {
                        alert.families.insert(o.win.family, seen);
                    }
                }
                if alert.families.len() < rule.families.len() {
                    return;
                }
                let burn = alert
                    .families
                    .values()
                    .map(|s| (1.0 - s.value) / (1.0 - objective))
                    .fold(f64::INFINITY, f64::min);
                (burn >= factor, burn, factor, None)
            }
        };
        if breach != alert.firing {
            alert.firing = breach;
            out.push(AlertEvent {
                rule: o.rule,
                segment: o.segment.clone(),
                model: o.model.clone(),
                feature: o.feature.clone(),
                win: o.win,
                firing: breach,
                value: shown.to_bits(),
                bound: bound.to_bits(),
                baseline: baseline.map(f64::to_bits),
                count: o.count,
            });
        }
    }
}

impl Alert {
    /// Takes `seen` as the newest window, keeping `keep` earlier windows; true when it is to
    /// be evaluated (a new window), false for an amendment (which only updates the values).
    fn advance(&mut self, seen: Seen, keep: usize) -> bool {
        match self.current {
            Some(c) if seen.win.end < c.win.end => {
                if let Some(h) = self.history.iter_mut().find(|h| h.win.end == seen.win.end) {
                    *h = seen;
                }
                false
            }
            Some(c) if seen.win.end == c.win.end => {
                self.current = Some(seen);
                false
            }
            prev => {
                if let (Some(p), true) = (prev, keep > 0) {
                    self.history.push_back(p);
                    while self.history.len() > keep {
                        self.history.pop_front();
                    }
                }
                self.current = Some(seen);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::spec::{Metric, ModelRole};
    use crate::drift::spec::Severity;

    fn rule(condition: Condition, families: Vec<u16>) -> Rule {
        Rule {
            name: "r".into(),
            metric: Metric::Accuracy,
            condition,
            families,
            segments: Vec::new(),
            features: Vec::new(),
            model: ModelRole::Production,
            min_count: 10,
            severity: Severity::P2,
            runbook: String::new(),
        }
    }

    fn obs(family: u16, end: u64, value: f64, count: u64) -> Observation {
        Observation {
            rule: 0,
            segment: "all".into(),
            model: "v1".into(),
            feature: String::new(),
            win: Win {
                family,
                start: end - 10,
                end,
            },
            value: value.to_bits(),
            count,
        }
    }

    fn run(r: &Rule, seq: &[Observation]) -> Vec<(u64, bool)> {
        let mut st = AlertState::default();
        let mut out = Vec::new();
        for o in seq {
            st.observe(std::slice::from_ref(r), o, &mut out);
        }
        out.iter().map(|e| (e.win.end, e.firing)).collect()
    }

    #[test]
    fn thresholds_fire_once_and_resolve_and_small_windows_change_nothing() {
        let r = rule(
            Condition::Threshold {
                above: None,
                below: Some(0.8),
            },
            vec![0],
        );
        let seq = [
            obs(0, 10, 0.9, 50),
            obs(0, 20, 0.7, 50),  // fires
            obs(0, 30, 0.6, 50),  // still firing: no event
            obs(0, 40, 0.95, 5),  // too few examples: ignored
            obs(0, 50, 0.85, 50), // resolves
            obs(0, 40, 0.1, 50),  // older than the newest: ignored
        ];
        assert_eq!(run(&r, &seq), vec![(20, true), (50, false)]);
    }

    #[test]
    fn amendments_do_not_flap_and_late_qualifiers_are_evaluated_once() {
        let r = rule(
            Condition::Threshold {
                above: None,
                below: Some(0.8),
            },
            vec![0],
        );
        let seq = [
            obs(0, 10, 0.7, 50), // fires
            obs(0, 10, 0.9, 60), // amended above the bound: not evaluated again
            obs(0, 20, 0.7, 5),  // too few examples when final
            obs(0, 20, 0.9, 40), // an amendment brings it to min_count: evaluated, resolves
            obs(0, 20, 0.5, 45), // amended again: not evaluated
        ];
        assert_eq!(run(&r, &seq), vec![(10, true), (20, false)]);
    }

    #[test]
    fn relative_drops_wait_for_a_full_baseline() {
        let r = rule(
            Condition::Relative {
                change: -0.1,
                windows: 2,
            },
            vec![0],
        );
        // Baseline of (0.9·100 + 0.8·300) / 400 = 0.825; bound 0.7425.
        let seq = [
            obs(0, 10, 0.5, 100), // no baseline yet
            obs(0, 20, 0.9, 100),
            obs(0, 30, 0.8, 300),
            obs(0, 40, 0.74, 100), // fires: below 0.7425 (baseline 20, 30)
            obs(0, 50, 0.80, 100), // baseline (30, 40): 0.785 → 0.7065; resolves
        ];
        let mut st = AlertState::default();
        let mut out = Vec::new();
        for o in &seq {
            st.observe(std::slice::from_ref(&r), o, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert!(out[0].firing && out[0].win.end == 40);
        assert!((f64::from_bits(out[0].baseline.unwrap()) - 0.825).abs() < 1e-12);
        assert!(!out[1].firing && out[1].win.end == 50);
    }

    #[test]
    fn burn_rates_need_every_family() {
        let r = rule(
            Condition::Burn {
                objective: 0.9,
                factor: 2.0,
            },
            vec![0, 1],
        );
        let seq = [
            obs(0, 10, 0.7, 50),  // burn 3 in the short family, long unseen
            obs(1, 60, 0.85, 50), // long burn 1.5: not both
            obs(0, 20, 0.6, 50),
            obs(1, 120, 0.75, 50), // long burn 2.5, short 4: fires
            obs(0, 130, 0.85, 50), // short 1.5: resolves
        ];
        assert_eq!(run(&r, &seq), vec![(120, true), (130, false)]);
    }

    #[test]
    fn series_that_stop_expire_and_resolve() {
        let r = rule(
            Condition::Threshold {
                above: None,
                below: Some(0.8),
            },
            vec![0],
        );
        let mut st = AlertState::default();
        let mut out = Vec::new();
        let rules = std::slice::from_ref(&r);
        st.observe(rules, &obs(0, 10, 0.5, 50), &mut out); // v1 fires
        let mut v2 = obs(0, 100, 0.9, 50);
        v2.model = "v2".into();
        st.observe(rules, &v2, &mut out);
        st.expire(100, &mut out); // 10 + 100 is not behind 100
        assert_eq!(out.len(), 1);
        v2.win.end = 200;
        st.observe(rules, &v2, &mut out);
        st.expire(100, &mut out);
        assert_eq!(out.len(), 2);
        assert!(!out[1].firing && out[1].model == "v1" && f64::from_bits(out[1].bound).is_nan());
        assert_eq!(st.alerts.len(), 1, "only v2 is left");
    }

    #[test]
    fn state_round_trips_through_json() {
        let r = rule(
            Condition::Relative {
                change: 0.5,
                windows: 1,
            },
            vec![0],
        );
        let mut st = AlertState::default();
        let mut out = Vec::new();
        st.observe(std::slice::from_ref(&r), &obs(0, 10, 0.3, 50), &mut out);
        st.observe(std::slice::from_ref(&r), &obs(0, 20, 0.5, 50), &mut out);
        let back: AlertState = serde_json::from_slice(&serde_json::to_vec(&st).unwrap()).unwrap();
        assert_eq!(back, st);
        assert_eq!(back.firing_by_rule(), BTreeMap::from([(0, 1)]));
    }
}
