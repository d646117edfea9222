//! Online learning: the dataflow's learner equals a plain sequential implementation applying the
//! same ordered minibatches and is bit-identical on 1 and 2 workers; the canary gate blocks a
//! poisoned challenger; a breaching champion is rolled back and updates pause; the defences keep
//! quarantined records from influencing the model; a process killed at any step of a registry
//! write leaves the registry consistent and a restart ends where an uninterrupted run does.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tidemark::learn::learner::{Action, Example, Learner, Out};
use tidemark::learn::model::FeatureSpec;
use tidemark::learn::spec::LearnSpec;
use tidemark::records::Event;
use tidemark::registry::{read_version, Registry};

const T0: u64 = 1_767_225_600_000;
const COUNTRIES: [&str; 4] = ["US", "DE", "FR", "BR"];
const DEVICES: [&str; 3] = ["ios", "android", "web"];

/// One generated labeled event.
#[derive(Clone)]
struct Ev {
    id: String,
    entity: String,
    time: u64,
    /// Numeric features in micro-units (amount may be null).
    num: [Option<i64>; 4],
    cat: [Option<&'static str>; 2],
    label: u8,
    label_time: u64,
}

/// Events with a hidden logistic concept, labels 0–20 s after their event, in event-time order.
fn stream(n: usize, seed: u64) -> Vec<Ev> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let amount = rng.gen_range(0..200_000) as i64 * 1000; // 0..200, 3 decimals
            let age = rng.gen_range(0..3650) as i64 * 1_000_000;
            let vel = rng.gen_range(0..20_000) as i64 * 1000;
            let ext = rng.gen_range(0..1000) as i64 * 1000;
            let country = COUNTRIES[rng.gen_range(0..4)];
            let device = DEVICES[rng.gen_range(0..3)];
            let z = 0.02 * (amount as f64 / 1e6 - 100.0)
                + 2.0 * (ext as f64 / 1e6 - 0.5)
                + if country == "BR" { 1.0 } else { 0.0 };
            let p = 1.0 / (1.0 + (-z).exp());
            let time = T0 + i as u64 * 100;
            Ev {
                id: format!("e{i:05}"),
                entity: format!("u{}", rng.gen_range(0..25)),
                time,
                num: [
                    (rng.gen_range(0..20) != 0).then_some(amount),
                    Some(age),
                    Some(vel),
                    Some(ext),
                ],
                cat: [(rng.gen_range(0..10) != 0).then_some(country), Some(device)],
                label: (rng.gen::<f64>() < p) as u8,
                label_time: time + rng.gen_range(0..20_000),
            }
        })
        .collect()
}

fn write_inputs(dir: &Path, evs: &[Ev]) {
    let num = |x: Option<i64>| x.map_or("null".to_string(), |v| format!("{}", v as f64 / 1e6));
    let cat = |x: Option<&str>| x.map_or("null".to_string(), |v| format!("\"{v}\""));
    let events: Vec<String> = evs
        .iter()
        .map(|e| {
            format!(
                r#"{{"event_id":"{}","entity":"{}","event_time":{},"amount":{},"age_days":{},"velocity":{},"score_ext":{},"country":{},"device":{}}}"#,
                e.id, e.entity, e.time, num(e.num[0]), num(e.num[1]), num(e.num[2]), num(e.num[3]),
                cat(e.cat[0]), cat(e.cat[1])
            )
        })
        .collect();
    let predictions: Vec<String> = evs
        .iter()
        .map(|e| prediction(&e.id, (e.num[3].unwrap() as f64 / 1e6).min(1.0), e.time))
        .collect();
    let mut by_label: Vec<&Ev> = evs.iter().collect();
    by_label.sort_by_key(|e| (e.label_time, e.id.clone()));
    let labels: Vec<String> = by_label
        .iter()
        .map(|e| label(&e.id, e.label, e.label_time))
        .collect();
    write_lines(dir, "events.jsonl", &events);
    write_lines(dir, "predictions.jsonl", &predictions);
    write_lines(dir, "labels.jsonl", &labels);
}

const WINDOWS: &str = "[[windows]]\nname = \"30s\"\nkind = \"tumbling\"\nsize_ms = 30000\n";

fn learn_job(dir: &Path, learn: &str) -> std::path::PathBuf {
    file_job(
        dir,
        &Times::default(),
        WINDOWS,
        &format!(
            "[metrics]\nsegments = [\"country\"]\n[learn]\nregistry = \"{}\"\n{learn}",
            dir.join("out").join("registry").display()
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// A plain sequential reference of the documented model: FNV-1a hashing, Welford
// standardization, per-example clipped gradients summed per shard then over shards in order,
// L2, AdaGrad.

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

struct Reference {
    w: Vec<f64>,
    b: f64,
    n: [u64; 4],
    mean: [f64; 4],
    m2: [f64; 4],
    g2: Vec<f64>,
}

const BITS: u32 = 6;
const SHARDS: u64 = 4;
const RATE: f64 = 0.2;
const L2: f64 = 1e-4;
const CLIP: f64 = 2.0;

impl Reference {
    fn new() -> Reference {
        let d = 4 + (1 << BITS);
        Reference {
            w: vec![0.0; d],
            b: 0.0,
            n: [0; 4],
            mean: [0.0; 4],
            m2: [0.0; 4],
            g2: vec![0.0; d + 1],
        }
    }

    fn encode(&self, e: &Ev) -> Vec<(usize, f64)> {
        let mut x = Vec::new();
        for i in 0..4 {
            if let Some(v) = e.num[i] {
                let v = v as f64 / 1e6;
                let z = if self.n[i] < 2 || self.m2[i] <= 0.0 {
                    0.0
                } else {
                    (v - self.mean[i]) / (self.m2[i] / self.n[i] as f64).sqrt()
                };
                x.push((i, z));
            }
        }
        for (j, c) in e.cat.iter().enumerate() {
            if let Some(c) = c {
                let h = fnv(&[&(j as u16).to_le_bytes(), c.as_bytes()]) & ((1 << BITS) - 1);
                x.push((4 + h as usize, 1.0));
            }
        }
        x
    }

    fn batch(&mut self, batch: &[&Ev]) {
        let d = self.w.len();
        let mut shards = vec![vec![0.0; d + 1]; SHARDS as usize];
        let xs: Vec<_> = batch.iter().map(|e| self.encode(e)).collect();
        for (e, x) in batch.iter().zip(&xs) {
            let z = self.b + x.iter().map(|(i, v)| self.w[*i] * v).sum::<f64>();
            let p = if z >= 0.0 {
                1.0 / (1.0 + (-z).exp())
            } else {
                z.exp() / (1.0 + z.exp())
            };
            let r = p - e.label as f64;
            let norm = r.abs() * (x.iter().map(|(_, v)| v * v).sum::<f64>() + 1.0).sqrt();
            let g = if norm > CLIP { r * (CLIP / norm) } else { r };
            let s = &mut shards[(fnv(&[e.id.as_bytes()]) % SHARDS) as usize];
            for (i, v) in x {
                s[*i] += g * v;
            }
            s[d] += g;
        }
        let mut total = vec![0.0; d + 1];
        for s in &shards {
            for (t, a) in total.iter_mut().zip(s) {
                *t += a;
            }
        }
        for (i, t) in total.iter().enumerate() {
            let g = t / batch.len() as f64;
            self.g2[i] += g * g;
            let step = if g == 0.0 {
                0.0
            } else {
                RATE * g / (self.g2[i].sqrt() + 1e-8)
            };
            // L2 as decoupled weight decay on the weights, not the bias.
            if i < d {
                self.w[i] = self.w[i] * (1.0 - RATE * L2) - step;
            } else {
                self.b -= step;
            }
        }
        for e in batch {
            for i in 0..4 {
                if let Some(v) = e.num[i] {
                    let v = v as f64 / 1e6;
                    self.n[i] += 1;
                    let dl = v - self.mean[i];
                    self.mean[i] += dl / self.n[i] as f64;
                    self.m2[i] += dl * (v - self.mean[i]);
                }
            }
        }
    }
}

const REF_LEARN: &str = "batch_size = 8\nshards = 4\nhash_bits = 6\nl2 = 1e-4\nclip = 2.0\npublish_every = 1\nlearning_rate = { kind = \"adagrad\", rate = 0.2 }\n";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn learned_weights_equal_a_sequential_reference_on_1_and_2_workers() {
    let evs = stream(900, 3);
    let runs: Vec<_> = [1usize, 2]
        .iter()
        .map(|&w| {
            let dir = tempfile::tempdir().unwrap();
            write_inputs(dir.path(), &evs);
            let job = learn_job(dir.path(), REF_LEARN);
            run_job(&job, w, &dir.path().join("out"));
            dir
        })
        .collect();
    let out = |i: usize| runs[i].path().join("out");
    // Bit-identical: every learner output and every registry file.
    for name in [
        "model_versions.jsonl",
        "model_decisions.jsonl",
        "quality.jsonl",
        "shadow.jsonl",
    ] {
        let a = std::fs::read(out(0).join(name)).unwrap();
        let b = std::fs::read(out(1).join(name)).unwrap();
        assert!(a == b, "{name} differs between 1 and 2 workers");
    }
    let reg = |i: usize| Registry::existing(&out(i).join("registry")).unwrap();
    let versions = reg(0).versions().unwrap();
    assert_eq!(versions, reg(1).versions().unwrap());
    for v in &versions {
        let a = std::fs::read(reg(0).version_path(v)).unwrap();
        let b = std::fs::read(reg(1).version_path(v)).unwrap();
        assert!(a == b, "version {v} differs between 1 and 2 workers");
    }

    // The documented order: labeled at the tick of the label time (events come first), then
    // by event id; minibatches never span timestamps.
    let mut by_ts: BTreeMap<u64, Vec<&Ev>> = BTreeMap::new();
    for e in &evs {
        by_ts
            .entry(e.label_time - e.label_time % 1000)
            .or_default()
            .push(e);
    }
    let mut reference = Reference::new();
    let mut published = Vec::new();
    for (_, mut group) in by_ts {
        group.sort_by(|a, b| a.id.cmp(&b.id));
        for chunk in group.chunks(8) {
            // 10 % of the examples, by a hash of their id, are held out for the canary gate.
            let batch: Vec<&Ev> = chunk
                .iter()
                .copied()
                .filter(|e| fnv(&[b"holdout", e.id.as_bytes()]) % 1_000_000 >= 100_000)
                .collect();
            if !batch.is_empty() {
                reference.batch(&batch);
                published.push((reference.w.clone(), reference.b));
            }
        }
    }
    assert_eq!(
        versions.len(),
        published.len(),
        "one version per minibatch that learned"
    );
    let mut worst = 0.0f64;
    for (v, (w, b)) in versions.iter().zip(&published) {
        let f = reg(0).version(v).unwrap();
        assert!(close(f.model.bias, *b), "{v}: bias {} vs {b}", f.model.bias);
        for (i, (x, y)) in f.model.weights.iter().zip(w).enumerate() {
            assert!(
                close(*x, *y),
                "{v}: weight {i} is {x}, the reference has {y}"
            );
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!(
        "{} versions; worst weight difference {worst:e}",
        versions.len()
    );
    // The online model's prequential rows sit next to the production model's.
    let q = changelog(&out(0), "quality");
    assert!(q.iter().any(|r| r["model_version"] == "online"));
    assert!(q.iter().any(|r| r["model_version"] == "m1"));
    let shadow = changelog(&out(0), "shadow");
    let all: i64 = retired_like(&shadow);
    assert_eq!(
        all,
        evs.len() as i64,
        "every labeled, scored event is compared once"
    );
}

/// Events compared in the shadow output: the last value inserted for each `all` window, summed.
fn retired_like(rows: &[Value]) -> i64 {
    let mut last: BTreeMap<(u64, String), i64> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r["segment"] == "all" && r["diff"] == 1)
    {
        let k = (
            r["window_start"].as_u64().unwrap(),
            r["model_version"].to_string(),
        );
        last.insert(k, r["count"].as_i64().unwrap());
    }
    last.values().sum()
}

// ---------------------------------------------------------------------------------------------
// The learner on its own: gate, rollback, defences.

fn spec(text: &str) -> LearnSpec {
    toml::from_str(text).unwrap()
}

fn features() -> FeatureSpec {
    FeatureSpec {
        numeric: vec![("x".into(), 0), ("y".into(), 1)],
        categorical: vec![("c".into(), 0)],
        hash_bits: 4,
    }
}

/// Examples of the concept `label = [2x - y + noise > 0]`, flipped if `flip`.
fn examples(rng: &mut rand_chacha::ChaCha8Rng, n: usize, from: usize, flip: bool) -> Vec<Example> {
    (from..from + n)
        .map(|i| {
            let x: f64 = rng.gen_range(-2.0..2.0);
            let y: f64 = rng.gen_range(-2.0..2.0);
            let noise: f64 = rng.gen_range(-0.5..0.5);
            let label = ((2.0 * x - y + noise > 0.0) != flip) as u8;
            Example {
                event: Arc::new(Event {
                    id: format!("e{i:07}").into(),
                    entity: format!("u{}", i % 50).into(),
                    time: i as u64 * 10,
                    numeric: smallvec::smallvec![Some((x * 1e6) as i64), Some((y * 1e6) as i64)],
                    categorical: smallvec::smallvec![Some(["a", "b"][i % 2].into())],
                    segments: Default::default(),
                }),
                label,
            }
        })
        .collect()
}

fn feed(l: &mut Learner, exs: &[Example], per_ts: usize) -> Vec<Out> {
    let mut out = Vec::new();
    for (k, chunk) in exs.chunks(per_ts).enumerate() {
        let ts = chunk[0].event.time + k as u64;
        l.step(ts, chunk, &mut out);
    }
    out
}

fn decisions(out: &[Out]) -> Vec<(Action, Option<String>, Option<String>, String)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Decision(d) => Some((
                d.action,
                d.version.clone(),
                d.champion.clone(),
                d.reason.clone(),
            )),
            _ => None,
        })
        .collect()
}

const GATE: &str = "publish_every = 1000\nbatch_size = 32\n[canary]\nwindow = 1000\nmin_examples = 200\nmax_loss_margin = 0.02\n";

#[test]
fn the_canary_blocks_a_challenger_trained_on_flipped_labels() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut l = Learner::new(spec(GATE), features(), "t", "f", 0.5, 1_000_000, None);
    let clean = examples(&mut rng, 5000, 0, false);
    let out = feed(&mut l, &clean, 100);
    let d = decisions(&out);
    // The first version waits for enough held-out examples; every later one is promoted.
    assert_eq!(d[0].0, Action::Block, "{d:?}");
    assert!(d[0].3.contains("held-out examples to judge it on"), "{d:?}");
    assert!(d[1..].iter().all(|x| x.0 == Action::Promote), "{d:?}");
    let champion = d.last().unwrap().1.clone();
    // A burst of 1000 records with flipped labels.
    let burst = examples(&mut rng, 1000, 5000, true);
    let out = feed(&mut l, &burst, 100);
    let d = decisions(&out);
    assert_eq!(d.len(), 1, "{d:?}");
    let (action, version, after, reason) = &d[0];
    assert_eq!(*action, Action::Block, "{reason}");
    assert!(reason.starts_with("trimmed log-loss"), "{reason}");
    assert_ne!(version, &champion);
    assert_eq!(after, &champion, "the champion stays");
    eprintln!("blocked: {reason}");
    // Clean traffic again: the online model recovers and a later version passes.
    let out = feed(&mut l, &examples(&mut rng, 6000, 6000, false), 100);
    assert!(decisions(&out).iter().any(|x| x.0 == Action::Promote));
}

#[test]
fn a_breaching_champion_is_rolled_back_and_updates_pause_until_resumed() {
    let text = format!("{GATE}[rollback]\nmin_accuracy = 0.7\nmin_examples = 300\n");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut l = Learner::new(spec(&text), features(), "t", "f", 0.5, 1_000_000, None);
    let out = feed(&mut l, &examples(&mut rng, 4000, 0, false), 100);
    let promoted: Vec<_> = decisions(&out)
        .into_iter()
        .filter(|d| d.0 == Action::Promote)
        .map(|d| d.1.unwrap())
        .collect();
    assert_eq!(promoted, ["v000002", "v000003"]);
    // The concept flips: the champion's accuracy collapses.
    let out = feed(&mut l, &examples(&mut rng, 400, 4000, true), 100);
    let d = decisions(&out);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, Action::Rollback);
    assert_eq!(d[0].1.as_deref(), Some("v000003"), "the breaching champion");
    assert_eq!(
        d[0].2.as_deref(),
        Some("v000002"),
        "the previous one restored"
    );
    assert!(l.paused());
    // Paused: nothing is learned or published, though every example is still scored.
    let before = l.online().clone();
    let exs = examples(&mut rng, 2000, 4400, true);
    let out = feed(&mut l, &exs, 100);
    assert_eq!(l.online(), &before);
    assert!(decisions(&out).is_empty());
    assert_eq!(
        out.iter().filter(|o| matches!(o, Out::Score(..))).count(),
        2000
    );
    let mut out = Vec::new();
    let resume = tidemark::control::Control {
        seq: 1,
        command: tidemark::control::Command::Resume,
        version: None,
        reason: "test".into(),
        offline: false,
        model: None,
    };
    l.control(&resume, &mut out);
    assert_eq!(decisions(&out)[0].0, Action::Resume);
    assert!(!l.paused());
    feed(&mut l, &examples(&mut rng, 100, 6400, true), 100);
    assert_ne!(l.online(), &before, "learning again");
}

#[test]
fn quarantined_records_do_not_influence_the_model() {
    let text = "publish_every = 100000\nbatch_size = 16\n[defence]\nentity_cap = 100\nentity_window_ms = 1000000000\noutlier_z = 6.0\nwarmup = 500\n";
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let clean = examples(&mut rng, 3000, 0, false);
    // Poison, each at its own timestamp: one entity's flipped-label flood beyond its cap, and
    // records with absurd feature values.
    let mut flood = examples(&mut rng, 300, 10_000, true);
    for e in &mut flood {
        Arc::make_mut(&mut e.event).entity = "mallory".into();
    }
    let mut outliers = examples(&mut rng, 50, 20_000, true);
    for e in &mut outliers {
        Arc::make_mut(&mut e.event).numeric[0] = Some(1_000_000_000_000);
    }
    // The cap counts learned examples: held-out ones pass it by. `admitted` is the flood's
    // prefix holding its first 100 learned examples.
    let held = |e: &Example| fnv(&[b"holdout", e.event.id.as_bytes()]) % 1_000_000 < 100_000;
    let mut learned = 0;
    let admitted = flood
        .iter()
        .position(|e| {
            learned += !held(e) as usize;
            learned > 100
        })
        .unwrap();
    let capped = flood[admitted..].iter().filter(|e| !held(e)).count();
    let mut a = Learner::new(spec(text), features(), "t", "f", 0.5, 1_000_000, None);
    let mut b = Learner::new(spec(text), features(), "t", "f", 0.5, 1_000_000, None);
    let mut qa = Vec::new();
    let mut ts = 0;
    for (k, chunk) in clean.chunks(100).enumerate() {
        ts += 1;
        let mut out = Vec::new();
        a.step(ts, chunk, &mut out);
        b.step(ts, chunk, &mut Vec::new());
        if k == 10 {
            // After warm-up: the cap admits the flood's first 100 (by event id), so `b` learns
            // those too; the rest and every outlier are quarantined.
            ts += 1;
            a.step(ts, &flood, &mut qa);
            b.step(ts, &flood[..admitted], &mut Vec::new());
            ts += 1;
            a.step(ts, &outliers, &mut qa);
        }
        qa.extend(out);
    }
    let q: Vec<_> = qa
        .iter()
        .filter_map(|o| match o {
            Out::Quarantine(q) => Some(q.reason.split(':').next().unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(q.iter().filter(|r| *r == "entity_cap").count(), capped);
    let outliers_learnable = outliers.iter().filter(|e| !held(e)).count();
    assert_eq!(
        q.iter().filter(|r| *r == "outlier").count(),
        outliers_learnable
    );
    assert_eq!(
        a.online(),
        b.online(),
        "quarantined records changed the model"
    );
}

// ---------------------------------------------------------------------------------------------
// The registry under crashes.

/// Every file the registry names exists and verifies; every version file verifies.
fn assert_consistent(dir: &Path, what: &str) {
    let reg = Registry::existing(dir).unwrap();
    let file = reg
        .read()
        .unwrap_or_else(|e| panic!("{what}: registry unreadable: {e}"));
    for v in reg.versions().unwrap() {
        read_version(&reg.version_path(&v)).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let named = file
        .champion
        .iter()
        .chain(&file.challenger)
        .chain(file.history.iter().filter_map(|h| h.version.as_ref()));
    for v in named {
        reg.version(v)
            .unwrap_or_else(|e| panic!("{what}: the registry names {v}: {e}"));
    }
}

#[test]
fn a_process_killed_at_any_step_of_a_registry_write_leaves_it_consistent() {
    let evs = stream(1500, 8);
    let base = tempfile::tempdir().unwrap();
    write_inputs(base.path(), &evs);
    let learn = "publish_every = 300\n[learn.canary]\nwindow = 300\nmin_examples = 20\n[replay]\nsegment_ms = 10000\n";
    // One job file for every run (same sources); each run has its own working directory,
    // where the relative registry path lands, and its own --out.
    let job = file_job(
        base.path(),
        &Times::default(),
        WINDOWS,
        &format!("[metrics]\nsegments = [\"country\"]\n[learn]\nregistry = \"reg\"\n{learn}"),
    );
    let run = |cwd: &Path, fault: Option<String>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"));
        c.current_dir(cwd)
            .arg("run")
            .arg(&job)
            .arg("--out")
            .arg(cwd.join("out"))
            .arg("--no-progress")
            .args(["--metrics", "127.0.0.1:0"]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(f) = fault {
            c.env("TIDEMARK_FAULT", f);
        }
        c.output().unwrap()
    };
    let clean = tempfile::tempdir().unwrap();
    let o = run(clean.path(), None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let clean_reg = Registry::existing(&clean.path().join("reg")).unwrap();
    let versions = clean_reg.versions().unwrap();
    assert!(versions.len() >= 4, "{versions:?}");
    assert!(clean_reg.read().unwrap().history.len() >= 4);
    let mut crashes = 0;
    for step in ["create", "write", "fsync", "rename", "dir_fsync"] {
        // The 1st write is a version file, the 2nd the registry file; later ones mid-run.
        for nth in [1, 2, 5] {
            let d = tempfile::tempdir().unwrap();
            let o = run(d.path(), Some(format!("registry:{step}:{nth}")));
            assert!(!o.status.success(), "{step}:{nth} did not crash");
            crashes += 1;
            let what = format!("after a crash at {step}:{nth}");
            assert_consistent(&d.path().join("reg"), &what);
            // A restart finishes the run; registry and outputs end as the uninterrupted run's.
            let o = run(d.path(), None);
            assert!(
                o.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_consistent(&d.path().join("reg"), &what);
            assert!(
                tree(&clean.path().join("reg")) == tree(&d.path().join("reg")),
                "{what}: the registry differs from the uninterrupted run's"
            );
            assert_same_outputs(&clean.path().join("out"), &d.path().join("out"), &what);
        }
    }
    assert_eq!(crashes, 15);
}

#[test]
fn snapshots_are_the_state_serialized_whole_as_the_score_log_grows_and_expires() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    // A short ttl, so that scores leave the log while others arrive.
    let mut l = Learner::new(spec(GATE), features(), "t", "f", 0.5, 3_000, None);
    let exs = examples(&mut rng, 3000, 0, false);
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    let mut taken = Vec::new();
    for (k, chunk) in exs.chunks(70).enumerate() {
        l.step(chunk[0].event.time + k as u64, chunk, &mut out);
        if k % 3 != 1 {
            let whole = serde_json::to_vec(&l.state).unwrap();
            let snap = l.snapshot();
            assert_eq!(snap.to_vec(), whole, "snapshot after step {k}");
            sizes.push(l.live_scores().count());
            taken.push((k, snap, whole));
        }
    }
    // Snapshots share their text with later ones: each still holds the state it was taken of.
    for (k, snap, whole) in &taken {
        assert_eq!(
            &snap.to_vec(),
            whole,
            "snapshot after step {k}, read at the end"
        );
    }
    // The log both grew and shrank between snapshots, and a restored learner snapshots alike.
    assert!(sizes.windows(2).any(|w| w[1] < w[0]) && sizes.iter().any(|n| *n > 200));
    let state: tidemark::learn::learner::LearnerState =
        serde_json::from_slice(&l.snapshot().to_vec()).unwrap();
    let mut r = Learner::new(spec(GATE), features(), "t", "f", 0.5, 3_000, Some(state));
    assert_eq!(r.snapshot().to_vec(), serde_json::to_vec(&r.state).unwrap());
    r.step(40_000, &exs[..50], &mut out);
    assert_eq!(r.snapshot().to_vec(), serde_json::to_vec(&r.state).unwrap());
}
