//! Drift monitoring end to end: the drift changelog's statistics equal a batch recomputation
//! from the raw events, the generator's data drift is flagged after its drift point and not
//! before, the concept-drift detectors fire soon after the abrupt concept change, replays
//! continue the detectors from their committed state, and bad drift configuration is refused
//! with errors naming the key or file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use tidemark::config::Job;
use tidemark::dataflow::drift::{DKey, DriftAgg, DriftRow, DriftStats};
use tidemark::dataflow::windows::{Status, Win};
use tidemark::drift::profile::{NumericRef, Profile};
use tidemark::drift::stats::{chi2_homogeneity, js_distance, ks_2samp, psi, wasserstein};
use tidemark::drift::Drift;
use tidemark::generator::{GeneratorParams, GeneratorStream, Metadata};
use tidemark::records::to_micro;
use tidemark::replay::manifest::Manifest;
use tidemark::replay::verify::{compare, digest};
use tidemark::runtime::{replay, RunOptions};
use tidemark::schema::Stream;

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// The columns that identify a drift row (besides its status).
fn drift_key(r: &Value) -> (u64, String, String, String) {
    (
        r["window_start"].as_u64().expect("window_start"),
        r["segment"].as_str().expect("segment").to_string(),
        r["feature"].as_str().expect("feature").to_string(),
        r["model_version"].as_str().unwrap_or("").to_string(),
    )
}

/// A changelog line without `ts` and `diff`: the row's value.
fn body(r: &Value) -> String {
    let mut v = r.clone();
    let m = v.as_object_mut().expect("a JSON object");
    m.remove("ts");
    m.remove("diff");
    v.to_string()
}

/// The rows in effect among `lines` (accumulated with their `diff`): each must be in effect
/// once or not at all.
fn in_effect<'a>(lines: impl IntoIterator<Item = &'a Value>) -> Vec<Value> {
    let mut acc: BTreeMap<String, i64> = BTreeMap::new();
    for l in lines {
        *acc.entry(body(l)).or_default() += l["diff"].as_i64().expect("diff");
    }
    acc.into_iter()
        .filter(|(_, d)| *d != 0)
        .map(|(b, d)| {
            assert_eq!(
                d, 1,
                "a row in effect more than once or retracted twice: {b}"
            );
            serde_json::from_str(&b).unwrap()
        })
        .collect()
}

/// The final value of every drift row (its retired tombstone), by key.
fn final_rows(rows: &[Value]) -> BTreeMap<(u64, String, String, String), Value> {
    let mut out = BTreeMap::new();
    for r in rows {
        if r["status"] == "retired" && r["diff"] == 1 {
            assert!(
                out.insert(drift_key(r), r.clone()).is_none(),
                "one retirement per key: {r}"
            );
        }
    }
    out
}

/// Asserts that `got` is `want` (JSON null for `None` or non-finite, as the writer does)
/// within `rel` relative error (0: the same bits).
fn float_eq(got: &Value, want: Option<f64>, rel: f64, what: &str) {
    match want.filter(|w| w.is_finite()) {
        None => assert!(got.is_null(), "{what}: got {got}, want null"),
        Some(w) => {
            let g = got
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: got {got}, want {w:e}"));
            let d = (g - w).abs();
            assert!(
                d == 0.0 || d <= rel * w.abs(),
                "{what}: got {g:e}, want {w:e} (relative error {:e})",
                d / w.abs()
            );
        }
    }
}

/// Asserts that a drift line carries the statistics `want`: counts, null rate, constant flag and
/// degrees of freedom exactly, the other statistics within `rel` relative error.
fn assert_stats(row: &Value, want: &DriftStats, rel: f64, what: &str) {
    assert_eq!(row["count"].as_u64(), Some(want.count), "{what}: count");
    assert_eq!(row["nulls"].as_u64(), Some(want.nulls), "{what}: nulls");
    assert_eq!(
        row["null_rate"].as_f64(),
        want.null_rate,
        "{what}: null_rate"
    );
    assert_eq!(row["constant"].as_bool(), want.constant, "{what}: constant");
    assert_eq!(row["chi2_dof"].as_u64(), want.chi2_dof, "{what}: chi2_dof");
    for (col, w) in [
        ("psi", want.psi),
        ("js_distance", want.js_distance),
        ("ks", want.ks),
        ("ks_p_value", want.ks_p_value),
        ("wasserstein", want.wasserstein),
        ("chi2", want.chi2),
        ("chi2_p_value", want.chi2_p_value),
        ("unseen_rate", want.unseen_rate),
    ] {
        float_eq(&row[col], w, rel, &format!("{what}: {col}"));
    }
}

/// Sums `fine` counts into coarse bins of `fine.len() / bins` consecutive cells each, as the
/// `[drift]` section defines them (`fine_bins` is a multiple of `bins`).
fn coarse(fine: &[u64], bins: usize) -> Vec<u64> {
    assert!(fine.len().is_multiple_of(bins));
    fine.chunks(fine.len() / bins)
        .map(|c| c.iter().sum())
        .collect()
}

/// A sorted multiset (distinct values ascending, with counts) of `values`.
fn multiset(values: &[i64]) -> Vec<(i64, u64)> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let mut out: Vec<(i64, u64)> = Vec::new();
    for x in v {
        match out.last_mut() {
            Some((y, c)) if *y == x => *c += 1,
            _ => out.push((x, 1)),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Incremental statistics equal a batch recomputation

/// Start of the property test's stream: a minute boundary, so windows are `T0 + k min`.
const T0: u64 = 1_767_225_600_000;
/// One-minute tumbling windows.
const MINUTE: u64 = 60_000;
/// Countries of the stream; the reference draws from the first four only, so `BR` is unseen.
const COUNTRIES: [&str; 5] = ["US", "GB", "DE", "FR", "BR"];

/// One generated stream event: offset from `T0`, amount (quarter units, so values tie), country,
/// score (twentieths), and how far later than its own time it is written (disorder).
#[derive(Debug, Clone)]
struct Ev {
    offset: u64,
    amount: Option<i32>,
    country: Option<usize>,
    score: u32,
    delay: u64,
}

fn amount_of(k: i32) -> f64 {
    k as f64 * 0.25
}

fn score_of(s: u32) -> f64 {
    s as f64 / 20.0
}

fn event_line(id: &str, t: u64, amount: Option<f64>, country: Option<&str>) -> String {
    json!({
        "event_id": id, "entity": "a", "event_time": t, "amount": amount, "age_days": 10,
        "velocity": 1, "score_ext": 0.5, "country": country, "device": "ios",
    })
    .to_string()
}

/// Reference events (amount, country among the first four, score): 50–300 of them, 10 %
/// null amounts, amounts on a quarter grid so that values tie.
fn reference_strategy() -> impl Strategy<Value = Vec<(Option<i32>, usize, u32)>> {
    prop::collection::vec(
        (prop::option::weighted(0.9, -8..40i32), 0..4usize, 0..=20u32),
        50..300,
    )
}

/// Stream events: 20–200 over three one-minute windows, amounts on a shifted grid (so that the
/// statistics are not all near zero), 5 % null countries, written up to 50 s late. 50 s is
/// within what the job accepts: a record is refused only past `max_lateness_ms` (60 s) behind
/// its partition's watermark, which trails the newest time by `allowed_disorder_ms` (2 s).
fn stream_strategy() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec(
        (
            0..3 * MINUTE,
            prop::option::weighted(0.9, -4..48i32),
            prop::option::weighted(0.95, 0..5usize),
            0..=20u32,
            0..=50_000u64,
        )
            .prop_map(|(offset, amount, country, score, delay)| Ev {
                offset,
                amount,
                country,
                score,
                delay,
            }),
        20..200,
    )
}

/// The exact statistics of a final numeric window, recomputed from its raw values against the
/// reference with the library's pure functions.
fn exact_numeric(values: &[Option<i64>], r: &NumericRef, bins: usize) -> DriftStats {
    let present: Vec<i64> = values.iter().flatten().copied().collect();
    let (n, nulls) = (present.len() as u64, (values.len() - present.len()) as u64);
    let mut cells = vec![0u64; r.cells.len()];
    for v in &present {
        cells[r.cell(*v) as usize] += 1;
    }
    let (rc, wc) = (coarse(&r.cells, bins), coarse(&cells, bins));
    let mut s = DriftStats {
        count: n,
        nulls,
        null_rate: (n + nulls > 0).then(|| nulls as f64 / (n + nulls) as f64),
        psi: psi(&rc, &wc),
        js_distance: js_distance(&rc, &wc),
        ..Default::default()
    };
    if n > 0 && r.n > 0 {
        let window = multiset(&present);
        let (d, p) = ks_2samp(&window, &r.values).expect("both samples non-empty");
        s.ks = Some(d);
        s.ks_p_value = Some(p);
        s.wasserstein = wasserstein(&window, &r.values);
        s.constant = Some(n >= 2 && window.len() == 1 && r.values.len() != 1);
    }
    s
}

/// The statistics of a categorical window, recomputed from its raw values.
fn exact_categorical(values: &[Option<&str>], reference: &BTreeMap<String, u64>) -> DriftStats {
    let mut window: BTreeMap<&str, u64> = BTreeMap::new();
    for v in values.iter().flatten() {
        *window.entry(v).or_default() += 1;
    }
    let n: u64 = window.values().sum();
    let nulls = values.len() as u64 - n;
    let names: BTreeSet<&str> = reference
        .keys()
        .map(String::as_str)
        .chain(window.keys().copied())
        .collect();
    let rc: Vec<u64> = names
        .iter()
        .map(|c| reference.get(*c).copied().unwrap_or(0))
        .collect();
    let wc: Vec<u64> = names
        .iter()
        .map(|c| window.get(c).copied().unwrap_or(0))
        .collect();
    let chi = chi2_homogeneity(&rc, &wc);
    let unseen: u64 = window
        .iter()
        .filter(|(c, _)| !reference.contains_key(**c))
        .map(|(_, k)| k)
        .sum();
    DriftStats {
        count: n,
        nulls,
        null_rate: (n + nulls > 0).then(|| nulls as f64 / (n + nulls) as f64),
        psi: psi(&rc, &wc),
        js_distance: js_distance(&rc, &wc),
        chi2: chi.map(|c| c.statistic),
        chi2_dof: chi.map(|c| c.dof),
        chi2_p_value: chi.map(|c| c.p_value),
        unseen_rate: (n > 0).then(|| unseen as f64 / n as f64),
        constant: (n > 0).then_some(n >= 2 && window.len() == 1 && reference.len() > 1),
        ..Default::default()
    }
}

/// The counts of one window and feature, built in one batch from its raw values (numeric values
/// binned with the profile's own `cell`).
fn batch_agg(
    drift: &Drift,
    feature: &str,
    numeric: &[Option<i64>],
    cats: &[Option<&str>],
) -> DriftAgg {
    let mut a = DriftAgg::default();
    let r = match feature {
        "amount" => drift.profile.numeric.get("amount"),
        "score" => drift.profile.score.as_ref(),
        _ => None,
    };
    if let Some(r) = r {
        let mut cells = vec![0u64; r.cells.len()];
        for v in numeric {
            match v {
                Some(v) => cells[r.cell(*v) as usize] += 1,
                None => a.nulls += 1,
            }
        }
        a.cells = cells.into();
    } else {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for v in cats {
            match v {
                Some(c) => *counts.entry(c.to_string()).or_default() += 1,
                None => a.nulls += 1,
            }
        }
        // Sorted by name, as the dataflow's reduce delivers them.
        a.cats = counts.into_iter().collect();
    }
    a
}

fn check_incremental(reference: &[(Option<i32>, usize, u32)], stream: &[Ev]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The reference, a day before the stream (a file reference ignores time).
    let rt = T0 - 86_400_000;
    let ref_events: Vec<String> = reference
        .iter()
        .enumerate()
        .map(|(i, (a, c, _))| {
            event_line(
                &format!("r{i}"),
                rt + i as u64,
                a.map(amount_of),
                Some(COUNTRIES[*c]),
            )
        })
        .collect();
    let ref_predictions: Vec<String> = reference
        .iter()
        .enumerate()
        .map(|(i, (_, _, s))| prediction(&format!("r{i}"), score_of(*s), rt + i as u64 + 5))
        .collect();
    write_lines(d, "ref_events.jsonl", &ref_events);
    write_lines(d, "ref_predictions.jsonl", &ref_predictions);
    // The stream, written in order of own time plus each record's delay: out of order by up
    // to 50 s.
    let mut order: Vec<usize> = (0..stream.len()).collect();
    order.sort_by_key(|&i| (stream[i].offset + stream[i].delay, i));
    let events: Vec<String> = order
        .iter()
        .map(|&i| {
            let e = &stream[i];
            event_line(
                &format!("e{i}"),
                T0 + e.offset,
                e.amount.map(amount_of),
                e.country.map(|c| COUNTRIES[c]),
            )
        })
        .collect();
    let predictions: Vec<String> = order
        .iter()
        .map(|&i| {
            prediction(
                &format!("e{i}"),
                score_of(stream[i].score),
                T0 + stream[i].offset + 5,
            )
        })
        .collect();
    write_lines(d, "events.jsonl", &events);
    write_lines(d, "predictions.jsonl", &predictions);
    write_lines(d, "labels.jsonl", &[]);
    let times = Times::default();
    let job = file_job(
        d,
        &times,
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        "[drift]\nfeatures = [\"amount\", \"country\"]\nfine_bins = 20\nbins = 5\n\
         reference = { events = [\"ref_events.jsonl\"], predictions = [\"ref_predictions.jsonl\"] }\n",
    );
    let out = d.join("out");
    run_job(&job, 1, &out);
    // The profile the run used.
    let drift = Job::load(&job).unwrap().drift.unwrap();
    let bins = drift.spec.bins as usize;
    let names: Vec<&str> = drift.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["amount", "country", "score"],
        "schema order, then the score"
    );
    assert!(
        changelog(&out, "dead_letters").is_empty(),
        "every record is within the allowed lateness"
    );

    // The raw values of each window: amounts (micro-units), countries, scores (micro-units).
    type Values<'a> = (Vec<Option<i64>>, Vec<Option<&'a str>>, Vec<Option<i64>>);
    let mut windows: BTreeMap<u64, Values> = BTreeMap::new();
    for e in stream {
        let t = T0 + e.offset;
        let w = windows.entry(t - t % MINUTE).or_default();
        w.0.push(e.amount.map(|a| to_micro(amount_of(a))));
        w.1.push(e.country.map(|c| COUNTRIES[c]));
        w.2.push(Some(to_micro(score_of(e.score))));
    }

    let rows = changelog(&out, "drift");
    let finals = final_rows(&rows);
    let mut by_key: BTreeMap<(u64, String, String, String), Vec<&Value>> = BTreeMap::new();
    for r in &rows {
        by_key.entry(drift_key(r)).or_default().push(r);
    }
    let mut expected_keys = BTreeSet::new();
    for (&start, (amounts, countries, scores)) in &windows {
        for (i, feature) in names.iter().enumerate() {
            let model = if *feature == "score" { "m1" } else { "" };
            let key = (
                start,
                "all".to_string(),
                feature.to_string(),
                model.to_string(),
            );
            expected_keys.insert(key.clone());
            let what = format!("window {start} {feature}");

            // (a) The final value: exact statistics from the window's raw values.
            let want = match *feature {
                "amount" => exact_numeric(amounts, &drift.profile.numeric["amount"], bins),
                "score" => exact_numeric(scores, drift.profile.score.as_ref().unwrap(), bins),
                _ => exact_categorical(countries, &drift.profile.categorical["country"].counts),
            };
            let row = finals
                .get(&key)
                .unwrap_or_else(|| panic!("{what}: no retired row"));
            assert_eq!(row["method"], "exact", "{what}");
            assert_stats(row, &want, 1e-12, &format!("{what} (final)"));

            // (b) The provisional row in effect just before the window became final (at its
            // end plus the label horizon) equals the statistics of counts built in one batch.
            let final_at = start + MINUTE + times.horizon;
            let lines = &by_key[&key];
            let provisional = in_effect(
                lines
                    .iter()
                    .copied()
                    .filter(|l| l["status"] == "provisional" && l["ts"].as_u64() < Some(final_at)),
            );
            assert_eq!(
                provisional.len(),
                1,
                "{what}: one provisional row in effect"
            );
            assert!(
                in_effect(
                    lines
                        .iter()
                        .copied()
                        .filter(|l| l["status"] == "provisional")
                )
                .is_empty(),
                "{what}: the provisional row is retracted when the window becomes final"
            );
            let agg = batch_agg(
                &drift,
                feature,
                if *feature == "score" { scores } else { amounts },
                countries,
            );
            let batch = DriftRow {
                key: DKey {
                    win: Win {
                        family: 0,
                        start,
                        end: start + MINUTE,
                    },
                    segment: "all".into(),
                    feature: i as u16,
                    model: model.into(),
                },
                status: Status::Provisional,
                agg,
                exact: None,
            };
            let want_method = if *feature == "country" {
                "exact"
            } else {
                "binned"
            };
            assert_eq!(provisional[0]["method"], want_method, "{what}");
            assert_stats(
                &provisional[0],
                &batch.stats(&drift),
                0.0,
                &format!("{what} (provisional)"),
            );
        }
    }
    assert_eq!(
        finals.keys().cloned().collect::<BTreeSet<_>>(),
        expected_keys,
        "one final row per window with events and feature, and no other"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case runs a job; a failure is reported, not saved to a regressions file.
        failure_persistence: None,
        max_shrink_iters: 64,
        ..ProptestConfig::with_cases(12)
    })]

    /// For random references and disordered streams (ties, nulls, unseen categories): every
    /// window's final drift row equals the exact statistics recomputed from the window's raw
    /// values with `tidemark::drift::stats` (to 1e-12 relative; counts and null rate exactly),
    /// and the provisional row in effect just before it became final equals `DriftRow::stats`
    /// of counts built in one batch: the incremental bin counts equal a batch count.
    #[test]
    fn incremental_statistics_equal_a_batch_recomputation(
        reference in reference_strategy(),
        stream in stream_strategy(),
    ) {
        check_incremental(&reference, &stream);
    }
}

// ---------------------------------------------------------------------------------------------
// Generated jobs: data drift, concept drift, replay

/// The generator of tests 2–4: 12,000 events at 20/s (ten minutes), the default drift points
/// (data drift at 30 % of the stream, abrupt concept change at 50 %, gradual change over
/// 70–90 %). Labels come 2 s (median) after their event, once each, and no record is malformed,
/// duplicated, corrected or very late, so that the order of the detectors' examples can be
/// derived from the generated streams alone (see `examples`).
const GENERATOR: &str = "events = 12000\nseed = 17\nrate_per_s = 20.0\n\
    latency_median_ms = 2000.0\nlatency_sigma = 0.5\nmalformed_fraction = 0.0\n\
    duplicate_label_fraction = 0.0\ncorrected_label_fraction = 0.0\nvery_late_fraction = 0.0";

/// 30 s windows, the reference = the stream's first minute (the generator starts at
/// 1767225600000 by default), alerts on PSI > 0.2 (P2) and chi-square p < 0.001 (P3) in
/// windows of at least 100 values, replay segments of 20 s.
const GEN_REST: &str = r#"
[[windows]]
name = "30s"
kind = "tumbling"
size_ms = 30000
[outputs]
dir = "unused"
formats = ["jsonl"]
summary = false
emit_interval_ms = 5000
[drift]
reference = { from = "1767225600000", to = "1767225660000" }
[[drift.alerts]]
statistic = "psi"
above = 0.2
severity = "P2"
min_count = 100
[[drift.alerts]]
statistic = "chi2_p_value"
below = 0.001
severity = "P3"
min_count = 100
[replay]
segment_ms = 20000
"#;

/// The features the generator's data drift changes.
const DRIFTING: [&str; 2] = ["amount", "country"];
/// The event features it leaves alone.
const UNAFFECTED: [&str; 4] = ["age_days", "velocity", "score_ext", "device"];
/// The alert rules' `min_count`: windows with fewer values are partial (the stream's ends).
const MIN_COUNT: u64 = 100;
/// The job's window size.
const WINDOW: u64 = 30_000;
/// The PSI threshold of the P2 rule.
const PSI_ALERT: f64 = 0.2;

fn gen_times() -> Times {
    Times::short()
}

/// Writes the generated job into `d` and runs it live on one worker into `d/live`.
fn generated_run(d: &Path) -> (PathBuf, PathBuf) {
    let job = generator_job(d, &gen_times(), GENERATOR, GEN_REST);
    let live = d.join("live");
    run_job(&job, 1, &live);
    (job, live)
}

/// The event time at which the generator's drift of `kind` starts (`data`, `concept_abrupt`),
/// and its first event index.
fn drift_point(job: &Job, kind: &str) -> (u64, u64) {
    let m = Metadata::new(&job.spec.generator);
    let p = m
        .drift_points
        .iter()
        .find(|p| p.kind == kind)
        .expect("the generator describes its drift points");
    (p.start_time_ms, p.start_index)
}

/// The generator's event index of an event id (`ev000001234`).
fn index_of(id: &str) -> u64 {
    id.strip_prefix("ev")
        .and_then(|n| n.parse().ok())
        .expect("a generated event id")
}

/// The final PSI of every full window (at least `MIN_COUNT` values), by (window start, feature).
fn full_window_psi(
    finals: &BTreeMap<(u64, String, String, String), Value>,
) -> BTreeMap<(u64, String), f64> {
    finals
        .iter()
        .filter(|(k, r)| k.1 == "all" && r["count"].as_u64().unwrap() >= MIN_COUNT)
        .map(|(k, r)| ((k.0, k.2.clone()), r["psi"].as_f64().expect("a PSI")))
        .collect()
}

/// A generator job whose reference is its own first minute: among full windows (at least the
/// alert rules' 100 values) the drifting features, `amount` and `country`, have PSI ≤ 0.2 in
/// every window that ends by the generator's data-drift point and PSI > 0.2 in every window that
/// starts at or after it; the other event features never exceed 0.2 in a final row (false-flag
/// rate 0 of 80); `drift_alerts` holds final PSI and chi-square alerts for `amount` and
/// `country` in every window after the drift, no `amount` or `country` alert before it and no
/// final alert before it or of an unaffected feature. Provisional (binned, partly filled)
/// values of unaffected features may cross 0.2 by sampling noise: measured 3 of 480 (0.6 %),
/// all below 2 × min_count values; asserted ≤ 1 % and below 200 values.
#[test]
fn the_data_drift_is_flagged_after_the_drift_point_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let (job, out) = generated_run(dir.path());
    let job = Job::load(&job).unwrap();
    // Where the generator drifts `amount` (lognormal mu 3.5 -> 4.0) and `country` (mix shifts
    // to BR and IN): 30 % into the stream, a window boundary here.
    let (drift_at, _) = drift_point(&job, "data");
    assert_eq!(drift_at % WINDOW, 0, "the drift point is a window boundary");
    let finals = final_rows(&changelog(&out, "drift"));
    let psi = full_window_psi(&finals);
    let windows: BTreeSet<u64> = psi.keys().map(|k| k.0).collect();
    let (before, after): (Vec<u64>, Vec<u64>) =
        windows.iter().partition(|w| **w + WINDOW <= drift_at);
    assert!(
        before.len() >= 5 && after.len() >= 12,
        "full windows: {before:?} {after:?}"
    );

    let mut false_flags = Vec::new();
    let mut misses = Vec::new();
    for feature in DRIFTING {
        let pre: Vec<f64> = before
            .iter()
            .map(|w| psi[&(*w, feature.to_string())])
            .collect();
        let post: Vec<f64> = after
            .iter()
            .map(|w| psi[&(*w, feature.to_string())])
            .collect();
        let max_pre = pre.iter().copied().fold(0.0, f64::max);
        let min_post = post.iter().copied().fold(f64::INFINITY, f64::min);
        eprintln!(
            "{feature}: PSI before the drift max {max_pre:.4} over {} windows, after it min {min_post:.4} over {} windows",
            pre.len(),
            post.len()
        );
        false_flags.extend(
            before
                .iter()
                .zip(&pre)
                .filter(|(_, p)| **p > PSI_ALERT)
                .map(|(w, p)| (feature, *w, *p)),
        );
        misses.extend(
            after
                .iter()
                .zip(&post)
                .filter(|(_, p)| **p <= PSI_ALERT)
                .map(|(w, p)| (feature, *w, *p)),
        );
    }
    assert!(
        false_flags.is_empty(),
        "flagged before the drift: {false_flags:?}"
    );
    assert!(misses.is_empty(), "not flagged after the drift: {misses:?}");

    // Features the generator never drifts.
    let mut checked = 0;
    let mut flagged = Vec::new();
    let mut max_psi: BTreeMap<&str, f64> = BTreeMap::new();
    for feature in UNAFFECTED {
        for w in &windows {
            let p = psi[&(*w, feature.to_string())];
            checked += 1;
            let m = max_psi.entry(feature).or_default();
            *m = m.max(p);
            if p > PSI_ALERT {
                flagged.push((feature, *w, p));
            }
        }
    }
    eprintln!(
        "unaffected features: {} of {checked} full windows flagged (false-flag rate {:.4}); max PSI {max_psi:?}",
        flagged.len(),
        flagged.len() as f64 / checked as f64
    );
    assert!(
        flagged.is_empty(),
        "unaffected features flagged: {flagged:?}"
    );
    let score: Vec<(u64, f64)> = windows
        .iter()
        .map(|w| (*w, psi[&(*w, "score".to_string())]))
        .collect();
    eprintln!("score PSI per window (drifts with amount and country, not asserted): {score:?}");

    // Alerts: every firing (status provisional, final or retired).
    let alerts: Vec<Value> = changelog(&out, "drift_alerts")
        .into_iter()
        .filter(|a| a["diff"] == 1)
        .collect();
    let feature = |a: &Value| a["feature"].as_str().unwrap().to_string();
    let mut by_kind: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for a in &alerts {
        *by_kind
            .entry((
                feature(a),
                a["statistic"].as_str().unwrap().into(),
                a["status"].as_str().unwrap().into(),
            ))
            .or_default() += 1;
    }
    eprintln!("alert firings by (feature, statistic, status): {by_kind:?}");
    let early: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["window_end"].as_u64().unwrap() <= drift_at)
        .collect();
    let early_drifting: Vec<&&Value> = early
        .iter()
        .filter(|a| DRIFTING.contains(&feature(a).as_str()))
        .collect();
    assert!(
        early_drifting.is_empty(),
        "amount or country alerts before the drift: {early_drifting:?}"
    );
    // Final values: every window after the drift alerts on both drifting features, and no
    // window before it nor any unaffected feature alerts at all.
    let fired: BTreeSet<(u64, String, String)> = alerts
        .iter()
        .filter(|a| a["status"] != "provisional")
        .map(|a| {
            (
                a["window_start"].as_u64().unwrap(),
                feature(a),
                a["statistic"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for w in &after {
        for (f, s) in [
            ("amount", "psi"),
            ("country", "psi"),
            ("country", "chi2_p_value"),
        ] {
            assert!(
                fired.contains(&(*w, f.into(), s.into())),
                "no final {f} {s} alert in window {w}"
            );
        }
    }
    let wrong: Vec<&(u64, String, String)> = fired
        .iter()
        .filter(|a| a.0 + WINDOW <= drift_at || UNAFFECTED.contains(&a.1.as_str()))
        .collect();
    assert!(
        wrong.is_empty(),
        "final alerts before the drift or of unaffected features: {wrong:?}"
    );
    // Provisional values are binned counts of a partly filled window, whose PSI has a sampling
    // noise of about (bins - 1)(1/n + 1/n_ref) (0.08 at n = 120 against the 1200 reference
    // values, 10 bins): at min_count 100 an unaffected feature's provisional value can cross 0.2.
    // Measured here: the rate among provisional values of full-count rows, and the counts at
    // which such alerts fired.
    let provisional: Vec<Value> = changelog(&out, "drift")
        .into_iter()
        .filter(|r| {
            r["diff"] == 1
                && r["status"] == "provisional"
                && r["count"].as_u64().unwrap() >= MIN_COUNT
                && UNAFFECTED.contains(&r["feature"].as_str().unwrap())
        })
        .collect();
    let crossed = provisional
        .iter()
        .filter(|r| r["psi"].as_f64().unwrap() > PSI_ALERT)
        .count();
    let counts: Vec<u64> = alerts
        .iter()
        .filter(|a| a["status"] == "provisional" && UNAFFECTED.contains(&feature(a).as_str()))
        .map(|a| a["count"].as_u64().unwrap())
        .collect();
    eprintln!(
        "unaffected features, provisional values with at least {MIN_COUNT} values: {crossed} of {} \
         above PSI {PSI_ALERT} (rate {:.4}); provisional alerts at counts {counts:?}; \
         of them before the drift: {:?}",
        provisional.len(),
        crossed as f64 / provisional.len() as f64,
        early
            .iter()
            .map(|a| (feature(a), &a["window_start"], &a["count"], &a["value"]))
            .collect::<Vec<_>>()
    );
    // Measured with this seed: 3 of 480 (0.6 %), at counts 114-122.
    assert!(
        crossed * 100 <= provisional.len(),
        "at most 1 % of provisional values cross"
    );
    assert!(
        counts.iter().all(|c| *c < 2 * MIN_COUNT),
        "provisional false alerts only in barely filled windows: {counts:?}"
    );
}

/// One labeled example of the detectors' error stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Example {
    /// The timestamp it is fed at.
    ts: u64,
    /// Its event's time.
    event_time: u64,
    /// Its event's id.
    id: String,
    /// When it was complete: the latest own time of its event, prediction and label.
    complete: u64,
}

/// The detectors' examples of a generated job, in the order they are fed: an event, its
/// prediction and its single label join at the latest of their timestamps. Each record is
/// stamped with its own time rounded down to the tick (none is later than the allowed disorder,
/// `sources::stamp`) and then processed at the next emit boundary (`dataflow::build`). An
/// example needs its event and prediction not yet expired (`ttl` after their time). Within a
/// timestamp examples go by event time, then id (`dataflow::detect`).
fn examples(job: &Job) -> Vec<Example> {
    let params: &GeneratorParams = &job.spec.generator;
    let t = &job.spec.time;
    let tick = t.tick_ms;
    let ttl = t.retention_ms + job.max_window_ms() + tick;
    let emit = job.spec.outputs.emit_interval(tick);
    let floor = |x: u64| x - x % tick;
    let own = |stream: Stream| -> Vec<(String, u64)> {
        GeneratorStream::new(params.clone(), stream, false)
            .map(|r| {
                assert!(r.malformed.is_none(), "no malformed records: {r:?}");
                (r.id.clone().unwrap(), r.time_ms() as u64)
            })
            .collect()
    };
    let events: BTreeMap<String, u64> = own(Stream::Events).into_iter().collect();
    let predictions: BTreeMap<String, u64> = own(Stream::Predictions).into_iter().collect();
    let labels = own(Stream::Labels);
    assert_eq!(
        labels.iter().map(|l| &l.0).collect::<BTreeSet<_>>().len(),
        labels.len(),
        "one label per event"
    );
    let mut out: Vec<Example> = labels
        .into_iter()
        .filter_map(|(id, lt)| {
            let (et, pt) = (events[&id], predictions[&id]);
            let ts = floor(et).max(floor(pt)).max(floor(lt)).div_ceil(emit) * emit;
            (ts < floor(et) + ttl && ts < floor(pt) + ttl).then(|| Example {
                ts,
                event_time: et,
                complete: et.max(pt).max(lt),
                id,
            })
        })
        .collect();
    out.sort();
    out
}

/// On a generator job with an abrupt concept change at half the stream (the model keeps
/// scoring with the old concept, so its error rate jumps, 0.22 -> 0.35 by ADWIN's account):
/// every detection sits at the position a model of the example stream, built from the
/// generator, gives its example (so positions are understood, not guessed); and ADWIN and
/// Page–Hinkley each fire after at most 220 and 240 examples of the new concept and within
/// 16 s of event time of the change (about twice the measured 107 and 117 examples, 7.9 and
/// 6.9 s). Detections before the change are printed, not asserted (DDM is known to fire early
/// on short streams; with this seed none of the three fired before the change).
#[test]
fn concept_drift_detectors_fire_after_the_abrupt_change() {
    let dir = tempfile::tempdir().unwrap();
    let (job, out) = generated_run(dir.path());
    let job = Job::load(&job).unwrap();
    // The generator switches concept at event index 6000 (half the stream), nominal time
    // start + 300 s.
    let (change_ms, change_index) = drift_point(&job, "concept_abrupt");
    let examples = examples(&job);
    let position: BTreeMap<&str, u64> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i as u64 + 1))
        .collect();
    let detections = changelog(&out, "drift_detections");
    assert!(!detections.is_empty());
    for d in &detections {
        assert_eq!(d["diff"], 1, "detections are never retracted");
        let id = d["event_id"].as_str().unwrap();
        assert_eq!(
            d["position"].as_u64(),
            position.get(id).copied(),
            "the example model places {d}"
        );
    }
    // The first example of an event generated under the new concept.
    let first_new = examples
        .iter()
        .position(|e| index_of(&e.id) >= change_index)
        .expect("examples after the change") as u64
        + 1;
    // Bounds: about twice the delays measured with this seed (None: not asserted).
    for (name, max_examples, max_ms) in [
        ("adwin", Some(220), Some(16_000)),
        ("page_hinkley", Some(240), Some(16_000)),
        ("ddm", None, None),
    ] {
        let mut dets: Vec<&Value> = detections
            .iter()
            .filter(|d| d["detector"] == name)
            .collect();
        dets.sort_by_key(|d| d["position"].as_u64());
        let early = dets
            .iter()
            .filter(|d| d["position"].as_u64().unwrap() < first_new)
            .count();
        let Some(first) = dets
            .iter()
            .find(|d| d["position"].as_u64().unwrap() >= first_new)
        else {
            panic!("{name} never fires after the change");
        };
        let p = first["position"].as_u64().unwrap();
        // Examples of new-concept events fed up to and including the detection.
        let new_examples = examples[..p as usize]
            .iter()
            .filter(|e| index_of(&e.id) >= change_index)
            .count() as u64;
        let fired = &examples[p as usize - 1];
        let delay_ms = fired.complete.saturating_sub(change_ms);
        eprintln!(
            "{name}: {} detections, {early} before the change; the first after it at position \
             {p}: {} examples after the first new-concept one, {new_examples} of them new-concept; \
             its example was complete {:.1} s of event time after the change (fed at ts +{} s)",
            dets.len(),
            p - first_new,
            delay_ms as f64 / 1000.0,
            (fired.ts - change_ms) / 1000
        );
        if let (Some(n), Some(ms)) = (max_examples, max_ms) {
            assert!(
                new_examples <= n,
                "{name}: fired after {new_examples} new-concept examples, bound {n}"
            );
            assert!(
                delay_ms <= ms,
                "{name}: fired {delay_ms} ms after the change, bound {ms}"
            );
        }
    }
}

/// A live generator run with detections before and inside the replayed range: replaying
/// `[start, committed)` on one and on two workers writes exactly the live run's lines of every
/// changelog (drift, drift_alerts and drift_detections among them) in that range and nothing
/// outside it. Detections carry their position in the whole error stream, so they match only
/// if the detectors continue from the committed snapshot rather than from scratch.
#[test]
fn replays_continue_the_detectors_from_their_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Which boundaries have a snapshot depends on when the checkpointer's commits fell in wall-
    // clock time (a loaded machine commits several boundaries at once, keeping the last one's
    // state). A run with no snapshot between its first and last detection cannot test this, so
    // it is run again, at most three times.
    let mut attempt = 0;
    let (job, live, m, ts, snapshot, start) = loop {
        attempt += 1;
        let sub = d.join(format!("attempt{attempt}"));
        std::fs::create_dir_all(&sub).unwrap();
        let (job, live) = generated_run(&sub);
        let buffer = live.join("replay");
        let m = Manifest::load(&buffer).unwrap().expect("a manifest");
        assert!(m.complete, "a finished run commits everything");
        let mut ts: Vec<u64> = changelog(&live, "drift_detections")
            .iter()
            .map(|l| l["ts"].as_u64().unwrap())
            .collect();
        ts.sort_unstable();
        ts.dedup();
        assert!(ts.len() >= 3, "detections at several timestamps: {ts:?}");
        // Half-way through the detections, off every emit (5 s) and segment (20 s) boundary,
        // after a committed snapshot that follows the first detection; or just after the first
        // such snapshot if none lies before the middle.
        let (first, last, mid) = (ts[0], ts[ts.len() - 1], ts[ts.len() / 2] - 1_500);
        let found = m
            .states
            .iter()
            .rev()
            .find(|s| s.at > first && s.at <= mid)
            .or_else(|| {
                m.states
                    .iter()
                    .find(|s| s.at > first && s.at + 1_500 < last)
            })
            .cloned();
        match found {
            Some(snapshot) => {
                let start = if snapshot.at <= mid {
                    mid
                } else {
                    snapshot.at + 1_500
                };
                break (job, live, m, ts, snapshot, start);
            }
            None if attempt < 3 => {
                eprintln!("attempt {attempt}: no snapshot between detections {ts:?}; again");
            }
            None => panic!(
                "no detector snapshot between the first and the last detection in {attempt} runs"
            ),
        }
    };
    let buffer = live.join("replay");
    let (first, last) = (ts[0], ts[ts.len() - 1]);
    assert!(first < start && start < last);
    assert_eq!(m.state_before(start), Some(&snapshot));
    eprintln!(
        "detections at ts {ts:?}; replay from {start}, detector snapshot at {}",
        snapshot.at
    );
    assert!(
        snapshot.at > ts[0],
        "the snapshot holds a detector that has fired before"
    );
    let range = start..m.committed;
    for workers in [1, 2] {
        let out = d.join(format!("replay{workers}"));
        let opts = RunOptions {
            workers,
            out_dir: Some(out.clone()),
            ..Default::default()
        };
        replay(Job::load(&job).unwrap(), &buffer, range.clone(), &opts).expect("replay succeeds");
        let digests = digest(&out, 0..u64::MAX).unwrap();
        for f in [
            "drift.jsonl",
            "drift_alerts.jsonl",
            "drift_detections.jsonl",
        ] {
            assert!(
                digests[f].lines > 0,
                "{f} has lines in the range: {digests:?}"
            );
        }
        eprintln!(
            "{workers} worker(s): {} detections, {} drift lines, {} alert lines replayed",
            digests["drift_detections.jsonl"].lines,
            digests["drift.jsonl"].lines,
            digests["drift_alerts.jsonl"].lines
        );
        assert_eq!(
            digest(&out, range.clone()).unwrap(),
            digests,
            "nothing outside the range is written"
        );
        assert_eq!(compare(&live, &out, range.clone()).unwrap(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Bad references and drift configuration

/// The `[drift]` section of a job over the small file inputs of `bad_config_dir`.
fn drift_job(d: &Path, drift: &str) -> PathBuf {
    file_job(
        d,
        &Times::default(),
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        drift,
    )
}

/// The error `Job::load` refuses `job` with.
fn refused(job: &Path) -> String {
    match Job::load(job) {
        Ok(_) => panic!("{} is accepted", job.display()),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `e` contains every one of `parts`.
fn names(e: &str, parts: &[&str]) {
    eprintln!("refused: {e}");
    for p in parts {
        assert!(e.contains(p), "{p:?} not in the error: {e}");
    }
}

/// A saved profile with one count changed (one bit flipped) is refused naming the profile file
/// and the feature; so is a profile built with other fine bins (naming the file and the fix);
/// a reference range with no events, an unknown feature, an alert with both `above` and
/// `below`, and `fine_bins` not a multiple of `bins` are refused naming the job file and the
/// key (`drift.reference`, `drift.features`, `drift.alerts[0]`, `drift.fine_bins`).
#[test]
fn bad_reference_and_drift_config_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let events: Vec<String> = (0..30)
        .map(|i| {
            event(
                &format!("e{i}"),
                "a",
                T0 + i * 1000,
                i as f64,
                ["US", "DE", "FR"][i as usize % 3],
            )
        })
        .collect();
    let predictions: Vec<String> = (0..30)
        .map(|i| prediction(&format!("e{i}"), i as f64 / 30.0, T0 + i * 1000 + 5))
        .collect();
    write_lines(d, "events.jsonl", &events);
    write_lines(d, "predictions.jsonl", &predictions);
    write_lines(d, "labels.jsonl", &[]);
    let files =
        "reference = { events = [\"events.jsonl\"], predictions = [\"predictions.jsonl\"] }";
    let job_path = d.join("job.toml").display().to_string();

    // Profiles saved from the reference files, with 20 and with 40 fine bins.
    let profile_of = |fine: u32| -> std::sync::Arc<Profile> {
        let job = drift_job(
            d,
            &format!("[drift]\nfine_bins = {fine}\nbins = 5\n{files}\n"),
        );
        Job::load(&job).unwrap().drift.unwrap().profile.clone()
    };
    profile_of(20).save(&d.join("p20.json")).unwrap();
    profile_of(40).save(&d.join("p40.json")).unwrap();
    let with_profile = |file: &str| {
        drift_job(
            d,
            &format!("[drift]\nfine_bins = 20\nbins = 5\nreference = {{ profile = \"{file}\" }}\n"),
        )
    };
    Job::load(&with_profile("p20.json")).expect("the saved profile is accepted as it is");

    // One count flipped: a numeric bin, a numeric value's count, a category, a score bin.
    let saved: Value = serde_json::from_slice(&std::fs::read(d.join("p20.json")).unwrap()).unwrap();
    for (pointer, feature) in [
        ("/numeric/amount/cells/3", "\"amount\""),
        ("/numeric/amount/values/7/1", "\"amount\""),
        ("/categorical/country/counts/DE", "\"country\""),
        ("/score/cells/0", "\"score\""),
    ] {
        let mut p = saved.clone();
        let count = p
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer} in the profile"));
        *count = json!(count.as_u64().unwrap() ^ 1);
        let file = d.join("flipped.json");
        std::fs::write(&file, serde_json::to_vec(&p).unwrap()).unwrap();
        let e = refused(&with_profile("flipped.json"));
        names(&e, &[&file.display().to_string(), feature, "add up"]);
    }

    // A profile built with other fine bins.
    let e = refused(&with_profile("p40.json"));
    names(
        &e,
        &[
            &d.join("p40.json").display().to_string(),
            "40 fine bins",
            "--fine-bins 20",
        ],
    );

    // A reference range of the job's own sources with no events in it (the events are at
    // 2026-01-01T00:00).
    let e = refused(&drift_job(
        d,
        "[drift]\nreference = { from = \"2030-01-01T00:00:00Z\", to = \"2030-01-01T01:00:00Z\" }\n",
    ));
    names(
        &e,
        &[
            &job_path,
            "drift.reference",
            "no usable events in the job's sources over [1893456000000, 1893459600000)",
            "records read, 0 refused",
        ],
    );
    // The same range in integer epoch milliseconds.
    let e = refused(&drift_job(
        d,
        "[drift]\nreference = { from = 1893456000000, to = 1893459600000 }\n",
    ));
    names(
        &e,
        &[
            &job_path,
            "no usable events",
            "[1893456000000, 1893459600000)",
        ],
    );

    // Reference files with no usable event: every file is read (each on a thread of its own),
    // the counts add up, and the first refusal named is the first file's.
    write_lines(d, "bad1.jsonl", &["{\"id\": 1}".into(), "not json".into()]);
    write_lines(d, "bad2.jsonl", &["[]".into(), "{}".into(), "7".into()]);
    let e = refused(&drift_job(
        d,
        "[drift]\nreference = { events = [\"bad1.jsonl\", \"bad2.jsonl\"] }\n",
    ));
    names(
        &e,
        &[
            "drift.reference",
            "no usable events",
            "5 records read, 5 refused",
        ],
    );
    let first = &e[e.find("first: ").expect("the first refusal is named")..];
    assert!(
        first.contains("bad1.jsonl:") && !first.contains("bad2"),
        "{e}"
    );

    // A feature the events schema does not have.
    let e = refused(&drift_job(
        d,
        &format!("[drift]\nfeatures = [\"amount\", \"colour\"]\n{files}\n"),
    ));
    names(
        &e,
        &[&job_path, "drift.features", "\"colour\"", "events.v1"],
    );

    // An alert rule with both a lower and an upper threshold.
    let e = refused(&drift_job(
        d,
        &format!(
            "[drift]\n{files}\n[[drift.alerts]]\nstatistic = \"psi\"\nabove = 0.2\nbelow = 0.1\nseverity = \"P2\"\n"
        ),
    ));
    names(
        &e,
        &[
            &job_path,
            "drift.alerts[0]",
            "exactly one of above or below",
        ],
    );

    // Fine bins that do not split evenly into the coarse ones.
    let e = refused(&drift_job(
        d,
        &format!("[drift]\nbins = 10\nfine_bins = 25\n{files}\n"),
    ));
    names(
        &e,
        &[&job_path, "drift.fine_bins", "multiple of drift.bins (10)"],
    );
}
