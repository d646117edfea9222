//! The built-in deterministic generator of events, predictions and late labels.
//!
//! For a given seed it always produces the same three streams, in the same arrival order:
//! Zipf-distributed entities, out-of-order event times, lognormal label latency with a long tail,
//! unlabeled events, duplicate and corrected labels, an abrupt and a gradual concept drift, a data
//! drift of one numeric (`amount`) and one categorical (`country`) feature, very late records and
//! malformed records of several kinds. Every event draws from its own random stream, so the
//! result does not depend on which streams are generated or in which order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Zipf};
use serde::{Deserialize, Serialize};

use crate::schema::{InputSchema, Stream};

/// Generator parameters (the `[generator]` table of a job, or `tidemark generate` flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorParams {
    /// Number of events.
    pub events: u64,
    /// Random seed.
    pub seed: u64,
    /// Event time of the first event, epoch milliseconds.
    pub start_ms: u64,
    /// Events per second of event time.
    pub rate_per_s: f64,
    /// Number of distinct entities.
    pub entities: u64,
    /// Zipf exponent of entity popularity.
    pub zipf_s: f64,
    /// Event times lag their arrival position by up to this much (out-of-order arrival).
    pub disorder_ms: u64,
    /// Fraction of events that never get a label.
    pub unlabeled_fraction: f64,
    /// Median label latency.
    pub latency_median_ms: f64,
    /// Lognormal sigma of label latency (the tail).
    pub latency_sigma: f64,
    /// Fraction of labeled events whose label is sent twice.
    pub duplicate_label_fraction: f64,
    /// Fraction of labeled events that first get a wrong label, corrected later.
    pub corrected_label_fraction: f64,
    /// Fraction of events (with their predictions) sent twice, the second time with other
    /// values (the job refuses the second copy as a duplicate).
    pub duplicate_event_fraction: f64,
    /// Fraction of records (per stream) that are malformed.
    pub malformed_fraction: f64,
    /// Fraction of events (with their predictions) that arrive very late.
    pub very_late_fraction: f64,
    /// How late very late events are.
    pub very_late_ms: u64,
    /// Fraction of the stream after which `amount` and `country` drift.
    pub data_drift_at: f64,
    /// Fraction of the stream at which the concept changes abruptly.
    pub abrupt_drift_at: f64,
    /// Fractions of the stream between which a third concept gradually takes over.
    pub gradual_drift: [f64; 2],
    /// Model version stamped on predictions.
    pub model: String,
}

impl Default for GeneratorParams {
    fn default() -> Self {
        GeneratorParams {
            events: 100_000,
            seed: 42,
            start_ms: 1_767_225_600_000,
            rate_per_s: 100.0,
            entities: 1000,
            zipf_s: 1.1,
            disorder_ms: 1000,
            unlabeled_fraction: 0.1,
            latency_median_ms: 30_000.0,
            latency_sigma: 1.0,
            duplicate_label_fraction: 0.02,
            corrected_label_fraction: 0.02,
            duplicate_event_fraction: 0.0,
            malformed_fraction: 0.002,
            very_late_fraction: 0.0005,
            very_late_ms: 3_600_000,
            data_drift_at: 0.3,
            abrupt_drift_at: 0.5,
            gradual_drift: [0.7, 0.9],
            model: "prod-v1".to_string(),
        }
    }
}

impl GeneratorParams {
    /// Checks the parameters; the error names the key and the reason.
    pub fn check(&self) -> Result<(), (String, String)> {
        let frac = |k: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err((k.to_string(), format!("{v} is not a fraction in [0, 1]")))
            }
        };
        frac("unlabeled_fraction", self.unlabeled_fraction)?;
        frac("duplicate_label_fraction", self.duplicate_label_fraction)?;
        frac("corrected_label_fraction", self.corrected_label_fraction)?;
        frac("duplicate_event_fraction", self.duplicate_event_fraction)?;
        frac("malformed_fraction", self.malformed_fraction)?;
        frac("very_late_fraction", self.very_late_fraction)?;
        frac("data_drift_at", self.data_drift_at)?;
        frac("abrupt_drift_at", self.abrupt_drift_at)?;
        frac("gradual_drift", self.gradual_drift[0])?;
        frac("gradual_drift", self.gradual_drift[1])?;
        if self.gradual_drift[0] > self.gradual_drift[1] {
            return Err(("gradual_drift".into(), "start must not exceed end".into()));
        }
        if !(self.rate_per_s > 0.0 && self.rate_per_s.is_finite()) {
            return Err(("rate_per_s".into(), "must be positive".into()));
        }
        if self.entities == 0 {
            return Err(("entities".into(), "must be positive".into()));
        }
        if self.zipf_s.is_nan() || self.zipf_s <= 0.0 {
            return Err(("zipf_s".into(), "must be positive".into()));
        }
        if self.latency_median_ms.is_nan()
            || self.latency_median_ms <= 0.0
            || self.latency_sigma.is_nan()
            || self.latency_sigma < 0.0
        {
            return Err((
                "latency_median_ms".into(),
                "median must be positive and sigma non-negative".into(),
            ));
        }
        if !(946_684_800_000..4_000_000_000_000).contains(&self.start_ms) {
            return Err((
                "start_ms".into(),
                "must be an epoch-millisecond time in this century".into(),
            ));
        }
        if self.model.is_empty() {
            return Err(("model".into(), "must not be empty".into()));
        }
        Ok(())
    }

    fn index_at(&self, fraction: f64) -> u64 {
        (self.events as f64 * fraction).round() as u64
    }

    /// Nominal (arrival-order) event time of event `i`.
    pub fn nominal_time(&self, i: u64) -> u64 {
        self.start_ms + (i as f64 * 1000.0 / self.rate_per_s) as u64
    }
}

/// Numeric features written by the generator, in schema order.
pub const NUMERIC: [&str; 4] = ["amount", "age_days", "velocity", "score_ext"];
/// Categorical features written by the generator, in schema order.
pub const CATEGORICAL: [&str; 2] = ["country", "device"];
const COUNTRIES: [&str; 6] = ["US", "GB", "DE", "FR", "IN", "BR"];
const COUNTRY_W_BEFORE: [f64; 6] = [0.40, 0.15, 0.15, 0.10, 0.15, 0.05];
const COUNTRY_W_AFTER: [f64; 6] = [0.25, 0.10, 0.10, 0.10, 0.20, 0.25];
const DEVICES: [&str; 3] = ["ios", "android", "web"];
const DEVICE_W: [f64; 3] = [0.45, 0.40, 0.15];

/// Weights of the true concepts over (amount_z, age_z, velocity_z, score_ext, device_web, country_BR), plus bias.
pub const CONCEPTS: [[f64; 7]; 3] = [
    [1.2, -0.8, 1.5, 1.0, 0.5, 0.3, -0.2],
    [-1.2, -0.8, 1.5, -1.0, 0.5, 0.3, -0.2],
    [-1.2, 0.8, 0.5, -1.0, -0.5, 0.3, 0.1],
];

/// Checks that an events schema carries the generator's fields.
pub fn check_events_schema(schema: &InputSchema) -> Result<(), String> {
    if schema.numeric != NUMERIC || schema.categorical != CATEGORICAL {
        return Err(format!(
            "generator sources write numeric {NUMERIC:?} and categorical {CATEGORICAL:?}; schema {} declares {:?} and {:?}",
            schema.id, schema.numeric, schema.categorical
        ));
    }
    Ok(())
}

/// Ways a generated record is broken on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformation {
    /// The line is cut in half (JSON only).
    Truncated,
    /// The id field is missing.
    MissingId,
    /// The time is a string (JSON only).
    TimeAsString,
    /// A number is NaN.
    NotANumber,
    /// The time is negative.
    NegativeTime,
    /// The time is in the year 2200.
    AbsurdTime,
}

impl Malformation {
    const ALL: [Malformation; 6] = [
        Malformation::Truncated,
        Malformation::MissingId,
        Malformation::TimeAsString,
        Malformation::NotANumber,
        Malformation::NegativeTime,
        Malformation::AbsurdTime,
    ];
    const COLUMNAR: [Malformation; 4] = [
        Malformation::MissingId,
        Malformation::NotANumber,
        Malformation::NegativeTime,
        Malformation::AbsurdTime,
    ];

    fn pick(roll: f64, columnar: bool) -> Malformation {
        let set: &[Malformation] = if columnar {
            &Self::COLUMNAR
        } else {
            &Self::ALL
        };
        set[((roll * set.len() as f64) as usize).min(set.len() - 1)]
    }
}

/// A generated value of a time or number field, possibly broken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GenTime {
    /// A proper time.
    Ms(i64),
    /// A time written as a string.
    Str(i64),
}

/// One generated record, typed, with its intended malformation (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct GenRecord {
    /// Stream it belongs to.
    pub stream: Stream,
    /// Sequence number within its stream (arrival order).
    pub seq: u64,
    /// Record id (`event_id`), `None` when missing on purpose.
    pub id: Option<String>,
    /// Entity (events only).
    pub entity: String,
    /// The record's own time.
    pub time: GenTime,
    /// Where the record falls among all streams' records as they would arrive live: its own
    /// time before any malformation (a broken time says nothing about when a record arrives).
    pub arrival: i64,
    /// Numeric features (events), score (predictions, one element) or label (labels, one element).
    pub numbers: Vec<Option<f64>>,
    /// Categorical features (events only).
    pub cats: Vec<Option<&'static str>>,
    /// Model version (predictions only).
    pub model: String,
    /// Cut the rendered JSON line in half.
    pub truncate: bool,
    /// How the record was broken on purpose, if it was.
    pub malformed: Option<Malformation>,
}

/// Everything about one event, derived from its own random stream.
#[derive(Debug, Clone)]
struct EventDraw {
    time: u64,
    entity: u64,
    numbers: [Option<f64>; 4],
    cats: [Option<&'static str>; 2],
    label: u8,
    score: f64,
    pred_delay: u64,
    latency: Option<u64>,
    duplicate: Option<u64>,
    correction: Option<u64>,
    corrupt: [f64; 3],
    duplicate_event: bool,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn weighted(rng: &mut ChaCha8Rng, items: &[&'static str], w: &[f64]) -> &'static str {
    let mut r: f64 = rng.gen();
    for (item, p) in items.iter().zip(w) {
        if r < *p {
            return item;
        }
        r -= p;
    }
    items[items.len() - 1]
}

/// Standardized features the concepts are defined over.
pub fn concept_inputs(numbers: &[Option<f64>], cats: &[Option<&str>]) -> [f64; 6] {
    let amount = numbers[0].unwrap_or(33.0).max(1e-9);
    [
        (amount.ln() - 3.5) / 0.8,
        numbers[1].unwrap_or(1825.0) / 3650.0 * 2.0 - 1.0,
        (numbers[2].unwrap_or(3.0) - 3.0) / 3.0,
        numbers[3].unwrap_or(0.0),
        (cats[1] == Some("web")) as u8 as f64,
        (cats[0] == Some("BR")) as u8 as f64,
    ]
}

/// Linear predictor of concept `c` at standardized inputs `x`.
pub fn concept_logit(c: usize, x: &[f64; 6]) -> f64 {
    let w = &CONCEPTS[c];
    w[..6].iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + w[6]
}

impl GeneratorParams {
    fn draw(&self, i: u64) -> EventDraw {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(i);
        let very_late = rng.gen_bool(self.very_late_fraction);
        let jitter = rng.gen_range(0..=self.disorder_ms);
        let mut time = self.nominal_time(i).saturating_sub(jitter);
        if very_late {
            time = time.saturating_sub(self.very_late_ms);
        }
        let zipf = Zipf::new(self.entities, self.zipf_s).expect("checked params");
        let entity = zipf.sample(&mut rng) as u64;
        let drifted = i >= self.index_at(self.data_drift_at);
        let mu = if drifted { 4.0 } else { 3.5 };
        let amount: f64 = LogNormal::new(mu, 0.8).expect("valid").sample(&mut rng);
        let age = rng.gen_range(0..3650) as f64;
        let velocity = (-3.0 * (1.0 - rng.gen::<f64>()).ln()).floor();
        let ext: f64 = Normal::new(0.0, 1.0).expect("valid").sample(&mut rng);
        let amount_null = rng.gen_bool(0.01);
        let device_null = rng.gen_bool(0.005);
        let country = weighted(
            &mut rng,
            &COUNTRIES,
            if drifted {
                &COUNTRY_W_AFTER
            } else {
                &COUNTRY_W_BEFORE
            },
        );
        let device = weighted(&mut rng, &DEVICES, &DEVICE_W);
        let numbers = [
            if amount_null {
                None
            } else {
                Some((amount * 100.0).round() / 100.0)
            },
            Some(age),
            Some(velocity),
            Some((ext * 1e4).round() / 1e4),
        ];
        let cats = [Some(country), if device_null { None } else { Some(device) }];
        let x = concept_inputs(&numbers, &cats);
        let [g0, g1] = [
            self.index_at(self.gradual_drift[0]),
            self.index_at(self.gradual_drift[1]),
        ];
        let mut concept = if i >= self.index_at(self.abrupt_drift_at) {
            1
        } else {
            0
        };
        let take_third: f64 = rng.gen();
        if i >= g1 || (i >= g0 && take_third < (i - g0) as f64 / (g1 - g0).max(1) as f64) {
            concept = 2;
        }
        let label = rng.gen_bool(sigmoid(concept_logit(concept, &x))) as u8;
        let noise = Normal::new(0.0, 0.3).expect("valid").sample(&mut rng);
        let score = (sigmoid(concept_logit(0, &x) + noise) * 1e6).round() / 1e6;
        let pred_delay = rng.gen_range(5..=50);
        let unlabeled = rng.gen_bool(self.unlabeled_fraction);
        let lat = LogNormal::new(self.latency_median_ms.ln(), self.latency_sigma)
            .expect("checked")
            .sample(&mut rng);
        let latency = (!unlabeled).then_some(lat.round() as u64 + 1);
        let dup = rng.gen_bool(self.duplicate_label_fraction);
        let dup_after = rng.gen_range(0..60_000);
        let corr = rng.gen_bool(self.corrected_label_fraction);
        let corr_after = rng.gen_range(60_000..600_000);
        let corrupt = [rng.gen(), rng.gen(), rng.gen()];
        // Drawn last: the draws before it are those of a generator without duplicates.
        let duplicate_event = rng.gen_bool(self.duplicate_event_fraction);
        EventDraw {
            time,
            entity,
            numbers,
            cats,
            label,
            score,
            pred_delay,
            latency,
            duplicate: (dup && latency.is_some()).then_some(dup_after),
            correction: (corr && latency.is_some()).then_some(corr_after),
            corrupt,
            duplicate_event,
        }
    }

    /// The event's true label and the concept index that produced it (for tests and metadata).
    pub fn truth(&self, i: u64) -> u8 {
        self.draw(i).label
    }
}

/// Iterator over one generated stream, in arrival order.
pub struct GeneratorStream {
    params: GeneratorParams,
    stream: Stream,
    columnar: bool,
    next_event: u64,
    seq: u64,
    pending: BinaryHeap<Reverse<(u64, u64, u8, u64)>>,
    ready: std::collections::VecDeque<GenRecord>,
}

impl GeneratorStream {
    /// Generates `stream`; `columnar` restricts malformations to those a Parquet file can hold.
    pub fn new(params: GeneratorParams, stream: Stream, columnar: bool) -> Self {
        GeneratorStream {
            params,
            stream,
            columnar,
            next_event: 0,
            seq: 0,
            pending: BinaryHeap::new(),
            ready: Default::default(),
        }
    }

    fn corrupt(&self, mut r: GenRecord, roll: f64) -> GenRecord {
        let p = self.params.malformed_fraction;
        if p <= 0.0 || roll >= p {
            return r;
        }
        let t = match r.time {
            GenTime::Ms(t) | GenTime::Str(t) => t,
        };
        let kind = Malformation::pick(roll / p, self.columnar);
        r.malformed = Some(kind);
        match kind {
            Malformation::Truncated => r.truncate = true,
            Malformation::MissingId => r.id = None,
            Malformation::TimeAsString => r.time = GenTime::Str(t),
            Malformation::NotANumber => {
                let k = if r.stream == Stream::Events { 3 } else { 0 };
                r.numbers[k] = Some(f64::NAN);
            }
            Malformation::NegativeTime => r.time = GenTime::Ms(-t),
            Malformation::AbsurdTime => r.time = GenTime::Ms(7_258_118_400_000),
        }
        r
    }

    fn push(&mut self, mut r: GenRecord, roll: f64) {
        r.seq = self.seq;
        self.seq += 1;
        let r = self.corrupt(r, roll);
        self.ready.push_back(r);
    }

    fn base(&self, stream: Stream, id: u64, time: u64) -> GenRecord {
        GenRecord {
            stream,
            seq: 0,
            id: Some(format!("ev{id:09}")),
            entity: String::new(),
            time: GenTime::Ms(time as i64),
            arrival: time as i64,
            numbers: Vec::new(),
            cats: Vec::new(),
            model: String::new(),
            truncate: false,
            malformed: None,
        }
    }

    fn step(&mut self) -> bool {
        if self.next_event >= self.params.events {
            if self.stream == Stream::Labels {
                if let Some(Reverse((t, i, label, roll_bits))) = self.pending.pop() {
                    let mut r = self.base(Stream::Labels, i, t);
                    r.numbers = vec![Some(label as f64)];
                    self.push(r, f64::from_bits(roll_bits));
                    return true;
                }
            }
            return false;
        }
        let i = self.next_event;
        self.next_event += 1;
        let d = self.params.draw(i);
        match self.stream {
            Stream::Events => {
                let mut r = self.base(Stream::Events, i, d.time);
                r.entity = format!("ent{:05}", d.entity);
                r.numbers = d.numbers.to_vec();
                r.cats = d.cats.to_vec();
                let again = d.duplicate_event.then(|| {
                    // The same event sent again with other values: another country and amount.
                    let mut again = r.clone();
                    again.numbers[0] = again.numbers[0].map(|a| a * 2.0);
                    let k = COUNTRIES.iter().position(|c| d.cats[0] == Some(*c));
                    again.cats[0] = k.map(|k| COUNTRIES[(k + 1) % COUNTRIES.len()]);
                    again
                });
                self.push(r, d.corrupt[0]);
                // Broken like the first copy, if it was: the same record sent twice.
                if let Some(again) = again {
                    self.push(again, d.corrupt[0]);
                }
            }
            Stream::Predictions => {
                let mut r = self.base(Stream::Predictions, i, d.time + d.pred_delay);
                r.numbers = vec![Some(d.score)];
                r.model = self.params.model.clone();
                let again = d.duplicate_event.then(|| {
                    let mut again = r.clone();
                    again.numbers[0] = again.numbers[0].map(|s| 1.0 - s);
                    again
                });
                self.push(r, d.corrupt[1]);
                if let Some(again) = again {
                    self.push(again, d.corrupt[1]);
                }
            }
            Stream::Labels => {
                if let Some(lat) = d.latency {
                    let t = d.time + lat;
                    let roll = d.corrupt[2].to_bits();
                    match d.correction {
                        Some(after) => {
                            self.pending.push(Reverse((t, i, 1 - d.label, roll)));
                            self.pending
                                .push(Reverse((t + after, i, d.label, 1.0f64.to_bits())));
                        }
                        None => self.pending.push(Reverse((t, i, d.label, roll))),
                    }
                    if let Some(after) = d.duplicate {
                        self.pending
                            .push(Reverse((t + after, i, d.label, 1.0f64.to_bits())));
                    }
                }
                let now = self.params.nominal_time(i);
                while let Some(Reverse((t, ..))) = self.pending.peek() {
                    if *t > now {
                        break;
                    }
                    let Reverse((t, i, label, roll)) = self.pending.pop().expect("peeked");
                    let mut r = self.base(Stream::Labels, i, t);
                    r.numbers = vec![Some(label as f64)];
                    self.push(r, f64::from_bits(roll));
                }
            }
        }
        true
    }
}

impl Iterator for GeneratorStream {
    type Item = GenRecord;

    fn next(&mut self) -> Option<GenRecord> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            if !self.step() {
                return None;
            }
        }
    }
}

fn json_number(x: f64) -> serde_json::Value {
    if x.is_finite() {
        serde_json::json!(x)
    } else {
        serde_json::Value::String("NaN".into())
    }
}

impl GenRecord {
    /// Renders the record as one JSON line in the generator's schemas (`*.v1`).
    pub fn to_json_line(&self) -> String {
        use serde_json::{Map, Value};
        let mut m = Map::new();
        if let Some(id) = &self.id {
            m.insert("event_id".into(), Value::String(id.clone()));
        }
        let time = match self.time {
            GenTime::Ms(t) => serde_json::json!(t),
            GenTime::Str(t) => Value::String(t.to_string()),
        };
        match self.stream {
            Stream::Events => {
                m.insert("entity".into(), Value::String(self.entity.clone()));
                m.insert("event_time".into(), time);
                for (name, v) in NUMERIC.iter().zip(&self.numbers) {
                    m.insert((*name).into(), v.map(json_number).unwrap_or(Value::Null));
                }
                for (name, v) in CATEGORICAL.iter().zip(&self.cats) {
                    m.insert(
                        (*name).into(),
                        v.map(|s| Value::String(s.into())).unwrap_or(Value::Null),
                    );
                }
            }
            Stream::Predictions => {
                m.insert("model_version".into(), Value::String(self.model.clone()));
                m.insert(
                    "score".into(),
                    self.numbers[0].map(json_number).unwrap_or(Value::Null),
                );
                m.insert("prediction_time".into(), time);
            }
            Stream::Labels => {
                let l = self.numbers[0].unwrap_or(0.0);
                let v = if l.is_finite() {
                    serde_json::json!(l as i64)
                } else {
                    json_number(l)
                };
                m.insert("label".into(), v);
                m.insert("label_time".into(), time);
            }
        }
        let line = Value::Object(m).to_string();
        if self.truncate {
            line[..line.len() / 2].to_string()
        } else {
            line
        }
    }

    /// The record's time as a signed integer, however it is rendered.
    pub fn time_ms(&self) -> i64 {
        match self.time {
            GenTime::Ms(t) | GenTime::Str(t) => t,
        }
    }
}

/// Drift points and true parameters of a generated data set, written as `metadata.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    /// The parameters used.
    pub params: GeneratorParams,
    /// Where each drift begins (and ends, for the gradual one).
    pub drift_points: Vec<DriftPoint>,
    /// True concept weights over (amount_z, age_z, velocity_z, score_ext, device_web, country_BR, bias).
    pub concepts: Vec<[f64; 7]>,
    /// Records written per stream (including malformed ones).
    pub records: std::collections::BTreeMap<String, u64>,
    /// Malformed records written per stream and kind.
    pub malformed: std::collections::BTreeMap<String, u64>,
}

/// One drift in the generated data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftPoint {
    /// `data`, `concept_abrupt` or `concept_gradual`.
    pub kind: String,
    /// What drifts.
    pub what: String,
    /// First affected event index.
    pub start_index: u64,
    /// Last event index of the transition (equals start for abrupt changes).
    pub end_index: u64,
    /// Nominal event time at `start_index`.
    pub start_time_ms: u64,
    /// Nominal event time at `end_index`.
    pub end_time_ms: u64,
}

impl Metadata {
    /// Describes the drift points of `params`; record counts are filled in by the writer.
    pub fn new(params: &GeneratorParams) -> Metadata {
        let point = |kind: &str, what: &str, a: f64, b: f64| {
            let (s, e) = (params.index_at(a), params.index_at(b));
            DriftPoint {
                kind: kind.into(),
                what: what.into(),
                start_index: s,
                end_index: e,
                start_time_ms: params.nominal_time(s),
                end_time_ms: params.nominal_time(e),
            }
        };
        Metadata {
            params: params.clone(),
            drift_points: vec![
                point(
                    "data",
                    "amount lognormal mu 3.5 -> 4.0; country mix shifts toward BR and IN",
                    params.data_drift_at,
                    params.data_drift_at,
                ),
                point(
                    "concept_abrupt",
                    "concept 0 -> 1 (signs of amount and score_ext flip)",
                    params.abrupt_drift_at,
                    params.abrupt_drift_at,
                ),
                point(
                    "concept_gradual",
                    "concept 1 -> 2, probability of the new concept rising linearly",
                    params.gradual_drift[0],
                    params.gradual_drift[1],
                ),
            ],
            concepts: CONCEPTS.to_vec(),
            records: Default::default(),
            malformed: Default::default(),
        }
    }
}
