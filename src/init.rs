//! `tidemark init`: a job and its schemas guessed from the first rows of a user's files.
//!
//! Each file (Parquet, or JSON Lines) is sampled and every column is classified by what its
//! values are (text, integers, floats, 0/1, times) and what it is called. The join key is the
//! column the three files share whose values are unique among the events; the other roles are
//! chosen by kind first and by name second. Every choice comes with its reason, so that a user
//! edits the result rather than writes it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::decode::{MAX_TIME_MS, MIN_TIME_MS};
use crate::error::{Error, Result};
use crate::schema::{FieldSpec, FieldType, Role, SchemaFile, Stream};
use crate::sources::partition::{sample_parquet, Sampled};

/// Rows read from each file.
pub const SAMPLE_ROWS: usize = 1000;

/// What the guess is made from: one file per stream.
#[derive(Debug, Clone)]
pub struct InitArgs {
    /// Events file.
    pub events: PathBuf,
    /// Predictions file.
    pub predictions: PathBuf,
    /// Labels file.
    pub labels: PathBuf,
    /// Directory the job file and its schemas are written to.
    pub out: PathBuf,
    /// The job's name (also the schemas' version suffix).
    pub name: String,
}

/// What `init` wrote and why it chose what it chose.
#[derive(Debug, Clone)]
pub struct Guess {
    /// The job file written.
    pub job: PathBuf,
    /// Schema files written.
    pub schemas: Vec<PathBuf>,
    /// One line per decision: stream, column, role or "skipped", and the reason.
    pub reasons: Vec<String>,
}

/// A sampled column and what its values are.
#[derive(Debug, Clone)]
struct Col {
    name: String,
    /// The Arrow type, or the JSON kinds seen.
    ty: String,
    cells: Vec<Sampled>,
    /// Non-null values.
    n: usize,
    /// Distinct non-null values (by text).
    distinct: usize,
    ints: bool,
    numbers: bool,
    strings: bool,
    bools: bool,
    /// Integer epoch milliseconds, an Arrow time, or ISO-8601 strings, within 2000..2100 (this
    /// and the kinds above hold for 95 % of the non-null values).
    time: bool,
    /// Every value is 0 or 1 (or a boolean).
    binary: bool,
    /// Every value is a number in [0, 1].
    unit: bool,
}

impl Col {
    fn new(name: String, ty: String, arrow_time: bool, cells: Vec<Sampled>) -> Col {
        let vals: Vec<&Sampled> = cells.iter().filter(|c| **c != Sampled::Null).collect();
        let n = vals.len();
        // Most, not all: a sample of real data holds a few malformed records (which the job
        // will dead-letter), and they must not hide what the column is.
        let all = |f: &dyn Fn(&Sampled) -> bool| {
            n > 0 && vals.iter().filter(|v| f(v)).count() * 100 >= n * 95
        };
        let ints = all(&|v| matches!(v, Sampled::Int(_)));
        let numbers = all(&|v| matches!(v, Sampled::Int(_) | Sampled::Float(_)));
        let strings = all(&|v| matches!(v, Sampled::Str(_)));
        let bools = all(&|v| matches!(v, Sampled::Bool(_)));
        let ms = |x: i128| (MIN_TIME_MS as i128..MAX_TIME_MS as i128).contains(&x);
        let time = all(&|v| match v {
            Sampled::Int(x) => ms(*x),
            Sampled::Str(s) => arrow_cast::parse::string_to_timestamp_nanos(s.trim())
                .is_ok_and(|ns| ms(ns.div_euclid(1_000_000) as i128)),
            _ => false,
        });
        let binary = all(&|v| match v {
            Sampled::Int(x) => *x == 0 || *x == 1,
            Sampled::Float(x) => *x == 0.0 || *x == 1.0,
            Sampled::Bool(_) => true,
            _ => false,
        });
        let unit = numbers
            && all(&|v| match v {
                Sampled::Int(x) => (0..=1).contains(x),
                Sampled::Float(x) => (0.0..=1.0).contains(x),
                _ => false,
            });
        let distinct = vals
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<BTreeSet<_>>()
            .len();
        Col {
            name,
            ty,
            cells,
            n,
            distinct,
            ints,
            numbers,
            strings,
            bools,
            time: arrow_time || time,
            binary,
            unit,
        }
    }

    fn text(&self) -> bool {
        self.strings || self.ints
    }

    fn unique(&self) -> bool {
        self.n > 0 && self.distinct * 100 >= self.n * 98
    }

    fn named(&self, words: &[&str]) -> bool {
        let n = self.name.to_ascii_lowercase();
        words.iter().any(|w| n == *w || n.contains(w))
    }

    /// Row `i`'s time in epoch ms, if it is one the job would accept.
    fn ms_at(&self, i: usize) -> Option<i64> {
        let ms = match &self.cells[i] {
            Sampled::Int(x) => i64::try_from(*x).ok()?,
            Sampled::Str(s) => arrow_cast::parse::string_to_timestamp_nanos(s.trim())
                .ok()?
                .div_euclid(1_000_000),
            _ => return None,
        };
        (MIN_TIME_MS..MAX_TIME_MS).contains(&ms).then_some(ms)
    }
}

/// Reads the first [`SAMPLE_ROWS`] rows of `path` as columns.
fn sample(path: &Path) -> Result<Vec<Col>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "parquet" {
        return Ok(sample_parquet(path, SAMPLE_ROWS)?
            .into_iter()
            .map(|(name, ty, time, cells)| Col::new(name, ty, time, cells))
            .collect());
    }
    if !matches!(ext, "jsonl" | "json" | "ndjson") {
        return Err(Error::config(
            path,
            "extension",
            "init reads .parquet and .jsonl (JSON Lines) files",
        ));
    }
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rows: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        if rows.len() == SAMPLE_ROWS {
            break;
        }
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(&line) else {
            return Err(Error::config(
                path,
                format!("line {}", i + 1),
                "not a JSON object; init needs JSON Lines, one object per line",
            ));
        };
        for k in obj.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
        rows.push(obj);
    }
    if rows.is_empty() {
        return Err(Error::config(path, "rows", "the file holds no records"));
    }
    Ok(names
        .into_iter()
        .map(|name| {
            let cells: Vec<Sampled> = rows
                .iter()
                .map(|r| match r.get(&name) {
                    None | Some(serde_json::Value::Null) => Sampled::Null,
                    Some(serde_json::Value::String(s)) => Sampled::Str(s.clone()),
                    Some(serde_json::Value::Bool(b)) => Sampled::Bool(*b),
                    Some(serde_json::Value::Number(x)) => match (x.as_i64(), x.as_u64()) {
                        (Some(i), _) => Sampled::Int(i.into()),
                        (_, Some(u)) => Sampled::Int(u.into()),
                        _ => Sampled::Float(x.as_f64().unwrap_or(f64::NAN)),
                    },
                    Some(other) => Sampled::Other(format!("{other}")),
                })
                .collect();
            let kinds: BTreeSet<&str> = cells
                .iter()
                .map(|c| match c {
                    Sampled::Null => "null",
                    Sampled::Str(_) => "string",
                    Sampled::Int(_) => "integer",
                    Sampled::Float(_) => "float",
                    Sampled::Bool(_) => "boolean",
                    Sampled::Other(_) => "other",
                })
                .collect();
            let ty = kinds.into_iter().collect::<Vec<_>>().join("|");
            Col::new(name, format!("JSON {ty}"), false, cells)
        })
        .collect())
}

/// The best column by `rank` among those `ok` accepts and `taken` does not hold, in column
/// order on ties (Parquet's column order; JSON keys in name order); lower ranks are better.
fn pick<'c>(
    cols: &'c [Col],
    taken: &BTreeSet<String>,
    ok: impl Fn(&Col) -> bool,
    rank: impl Fn(&Col) -> usize,
) -> Option<&'c Col> {
    cols.iter()
        .filter(|c| !taken.contains(&c.name) && ok(c))
        .min_by_key(|c| rank(c))
}

fn rank_by<'w>(words: &'w [&'w str]) -> impl Fn(&Col) -> usize + 'w {
    move |c: &Col| {
        let n = c.name.to_ascii_lowercase();
        words
            .iter()
            .position(|w| n == *w)
            .or_else(|| {
                words
                    .iter()
                    .position(|w| n.contains(w))
                    .map(|i| i + words.len())
            })
            .unwrap_or(2 * words.len())
    }
}

/// The declared type of a text role's column: `int64` for integers (it also reads every
/// `u64`, and a negative value past the sample does not refuse its record, as `uint64` would).
fn text_type(c: &Col) -> FieldType {
    if c.ints {
        FieldType::Int64
    } else {
        FieldType::String
    }
}

fn time_type(c: &Col) -> FieldType {
    if c.strings {
        FieldType::String
    } else {
        FieldType::TimestampMs
    }
}

fn field(name: &str, ty: FieldType, role: Role, nullable: bool, doc: String) -> FieldSpec {
    FieldSpec {
        name: name.to_string(),
        ty,
        role,
        nullable,
        doc,
    }
}

fn missing(stream: Stream, path: &Path, what: &str, cols: &[Col]) -> Error {
    let seen: Vec<String> = cols
        .iter()
        .map(|c| format!("{} ({})", c.name, c.ty))
        .collect();
    Error::config(
        path,
        stream.name(),
        format!(
            "found no column that could be the {what}; the columns are: {}",
            seen.join(", ")
        ),
    )
}

/// Guesses a job from the sampled files and writes it with its schemas into `args.out`.
pub fn init(args: &InitArgs) -> Result<Guess> {
    let paths = [&args.events, &args.predictions, &args.labels];
    let mut samples = Vec::new();
    for p in paths {
        samples.push(sample(p)?);
    }
    let [ev, pr, la] = [&samples[0], &samples[1], &samples[2]];
    let mut why = Vec::new();
    let mut taken: [BTreeSet<String>; 3] = Default::default();

    // The join key: a column of all three files, unique among the sampled events.
    let shared = |c: &Col| {
        pr.iter().any(|x| x.name == c.name && x.text())
            && la.iter().any(|x| x.name == c.name && x.text())
    };
    let id_words = ["event_id", "id", "request_id", "uuid", "_id"];
    let id = pick(
        ev,
        &taken[0],
        |c| c.text() && c.unique() && shared(c),
        rank_by(&id_words),
    )
    .ok_or_else(|| {
        missing(
            Stream::Events,
            &args.events,
            "event id (a column all three files share, unique among the events)",
            ev,
        )
    })?;
    why.push(format!(
        "all three: {} is the event id: the files share it and its {} sampled event values are \
         unique",
        id.name, id.n
    ));
    for t in &mut taken {
        t.insert(id.name.clone());
    }
    let pr_id = pr.iter().find(|c| c.name == id.name).expect("shared");
    let la_id = la.iter().find(|c| c.name == id.name).expect("shared");

    // Times: a time column per file, by name.
    let mut times = Vec::new();
    for (i, (stream, words)) in [
        (
            Stream::Events,
            &["event_time", "event_ts", "timestamp", "time", "ts", "date"][..],
        ),
        (
            Stream::Predictions,
            &[
                "prediction_time",
                "predicted_at",
                "scored_at",
                "timestamp",
                "time",
                "ts",
            ][..],
        ),
        (
            Stream::Labels,
            &["label_time", "labeled_at", "timestamp", "time", "ts"][..],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let cols = &samples[i];
        let t = pick(cols, &taken[i], |c| c.time, rank_by(words))
            .ok_or_else(|| missing(stream, paths[i], "record's time", cols))?;
        why.push(format!(
            "{stream}: {} is the time: {} ({})",
            t.name,
            if t.strings {
                "ISO-8601 strings"
            } else if t.ty.starts_with("JSON") {
                "integers of epoch milliseconds between 2000 and 2100"
            } else {
                "times"
            },
            t.ty
        ));
        taken[i].insert(t.name.clone());
        times.push(t);
    }

    let entity_words = [
        "entity",
        "user_id",
        "customer_id",
        "account_id",
        "client_id",
        "card_id",
        "merchant_id",
        "device_id",
        "session_id",
        "user",
        "customer",
        "account",
        "_id",
    ];
    let entity = pick(
        ev,
        &taken[0],
        |c| c.text() && c.named(&entity_words),
        rank_by(&entity_words),
    )
    .or_else(|| pick(ev, &taken[0], |c| c.strings && !c.unique(), |_| 0))
    .ok_or_else(|| {
        missing(
            Stream::Events,
            &args.events,
            "entity (who an event is about)",
            ev,
        )
    })?;
    why.push(format!(
        "events: {} is the entity: {}",
        entity.name,
        if entity.named(&entity_words) {
            "its name says so"
        } else {
            "the first text column whose values repeat"
        }
    ));
    taken[0].insert(entity.name.clone());

    let model_words = [
        "model_version",
        "model",
        "version",
        "model_id",
        "model_name",
    ];
    let model = pick(
        pr,
        &taken[1],
        |c| c.text() && c.named(&model_words),
        rank_by(&model_words),
    )
    .ok_or_else(|| {
        missing(
            Stream::Predictions,
            &args.predictions,
            "model version (a column named model or version)",
            pr,
        )
    })?;
    why.push(format!(
        "predictions: {} is the model version: its name",
        model.name
    ));
    taken[1].insert(model.name.clone());

    let score_words = [
        "score",
        "probability",
        "proba",
        "prob",
        "prediction",
        "pred",
        "p",
    ];
    let score = pick(pr, &taken[1], |c| c.unit && !c.ints, rank_by(&score_words))
        .or_else(|| pick(pr, &taken[1], |c| c.unit, rank_by(&score_words)))
        .ok_or_else(|| {
            missing(
                Stream::Predictions,
                &args.predictions,
                "score (numbers in [0, 1])",
                pr,
            )
        })?;
    why.push(format!(
        "predictions: {} is the score: its values are numbers in [0, 1]",
        score.name
    ));
    taken[1].insert(score.name.clone());

    let label_words = ["label", "target", "outcome", "y", "is_", "truth"];
    let label = pick(la, &taken[2], |c| c.binary, rank_by(&label_words))
        .ok_or_else(|| missing(Stream::Labels, &args.labels, "label (0 or 1)", la))?;
    why.push(format!(
        "labels: {} is the label: its values are 0 and 1",
        label.name
    ));
    taken[2].insert(label.name.clone());

    // Features: the events' other columns.
    let mut numeric = Vec::new();
    let mut categorical = Vec::new();
    let mut skipped = Vec::new();
    for c in ev.iter().filter(|c| !taken[0].contains(&c.name)) {
        if c.name.starts_with("__index_level_") {
            skipped.push((c, "pandas' index, not data".to_string()));
        } else if c.n == 0 {
            skipped.push((c, "null in every sampled row".to_string()));
        } else if c.numbers && !c.ints || c.ints && c.distinct > 20 {
            numeric.push(c);
        } else if c.text() && c.distinct <= (c.n / 2).max(50) {
            categorical.push(c);
        } else if c.text() {
            skipped.push((
                c,
                format!(
                    "{} distinct values in {} rows: an identifier, not a category",
                    c.distinct, c.n
                ),
            ));
        } else {
            skipped.push((c, format!("{} is no feature type tidemark reads", c.ty)));
        }
    }
    for c in &numeric {
        why.push(format!(
            "events: {} is a numeric feature ({})",
            c.name, c.ty
        ));
    }
    for c in &categorical {
        why.push(format!(
            "events: {} is a categorical feature ({} distinct values sampled)",
            c.name, c.distinct
        ));
    }
    for (c, reason) in &skipped {
        why.push(format!("events: {} skipped: {reason}", c.name));
    }
    for (i, cols) in [(1, pr), (2, la)] {
        for c in cols.iter().filter(|c| !taken[i].contains(&c.name)) {
            why.push(format!(
                "{}: {} skipped: only the {} are read from this stream",
                Stream::ALL[i],
                c.name,
                if i == 1 {
                    "id, model, score and time"
                } else {
                    "id, label and time"
                }
            ));
        }
    }

    // Time settings from the sample: disorder, and how late labels come.
    let disorder = max_disorder(times[0]).max(2_000);
    let latency = label_latency(id, times[0], la_id, times[2]);
    // The sample sees the first labels only: twice the slowest of them, five minutes at least.
    let horizon = latency
        .map(|l| round_up((2 * l).max(300_000)))
        .unwrap_or(3_600_000);
    why.push(match latency {
        Some(l) => format!(
            "time: label_horizon_ms = {horizon}: twice the slowest sampled label ({l} ms after \
             its event), five minutes at least; raise it if later labels come later"
        ),
        None => format!(
            "time: label_horizon_ms = {horizon}: no sampled label matched a sampled event; \
             set it to how late your labels come"
        ),
    });
    why.push(format!(
        "time: allowed_disorder_ms = {disorder}: the sampled event times go back by at most that"
    ));

    let segments: Vec<&str> = categorical
        .iter()
        .filter(|c| (2..=20).contains(&c.distinct))
        .take(2)
        .map(|c| c.name.as_str())
        .collect();
    let entity_features: Vec<&str> = numeric.iter().take(3).map(|c| c.name.as_str()).collect();

    // The schemas.
    let version = &args.name;
    let schema = |stream: Stream, fields: Vec<FieldSpec>, path: &Path| SchemaFile {
        id: format!("{stream}.{version}"),
        stream: Some(stream),
        doc: format!("Guessed by tidemark init from {}.", path.display()),
        fields,
    };
    let doc = |c: &Col, what: &str| format!("{what} (sampled as {}).", c.ty);
    let mut ev_fields = vec![
        field(
            &id.name,
            text_type(id),
            Role::Id,
            false,
            doc(id, "Event id"),
        ),
        field(
            &entity.name,
            text_type(entity),
            Role::Entity,
            false,
            doc(entity, "Entity"),
        ),
        field(
            &times[0].name,
            time_type(times[0]),
            Role::Time,
            false,
            doc(times[0], "Event time"),
        ),
    ];
    for c in &numeric {
        let ty = if c.ints && !c.ty.starts_with("JSON") {
            FieldType::Int64
        } else {
            FieldType::Float64
        };
        ev_fields.push(field(
            &c.name,
            ty,
            Role::Numeric,
            true,
            doc(c, "Numeric feature"),
        ));
    }
    for c in &categorical {
        ev_fields.push(field(
            &c.name,
            text_type(c),
            Role::Categorical,
            true,
            doc(c, "Category"),
        ));
    }
    let files = [
        schema(Stream::Events, ev_fields, &args.events),
        schema(
            Stream::Predictions,
            vec![
                field(
                    &id.name,
                    text_type(pr_id),
                    Role::Id,
                    false,
                    doc(pr_id, "Event id"),
                ),
                field(
                    &model.name,
                    text_type(model),
                    Role::Model,
                    false,
                    doc(model, "Model version"),
                ),
                field(
                    &score.name,
                    FieldType::Float64,
                    Role::Score,
                    false,
                    doc(score, "Score in [0, 1]"),
                ),
                field(
                    &times[1].name,
                    time_type(times[1]),
                    Role::Time,
                    false,
                    doc(times[1], "Prediction time"),
                ),
            ],
            &args.predictions,
        ),
        schema(
            Stream::Labels,
            vec![
                field(
                    &id.name,
                    text_type(la_id),
                    Role::Id,
                    false,
                    doc(la_id, "Event id"),
                ),
                field(
                    &label.name,
                    if label.bools {
                        FieldType::Bool
                    } else if label.ints {
                        FieldType::Int64
                    } else {
                        FieldType::Float64
                    },
                    Role::Label,
                    false,
                    doc(label, "Label, 0 or 1"),
                ),
                field(
                    &times[2].name,
                    time_type(times[2]),
                    Role::Time,
                    false,
                    doc(times[2], "Label time"),
                ),
            ],
            &args.labels,
        ),
    ];

    let dir = &args.out;
    let schemas_dir = dir.join("schemas");
    std::fs::create_dir_all(&schemas_dir).map_err(|e| Error::io(&schemas_dir, e))?;
    let mut written = Vec::new();
    for f in &files {
        let path = schemas_dir.join(format!("{}.json", f.id));
        let text = serde_json::to_string_pretty(f).expect("a schema serializes") + "\n";
        write_new(&path, &text)?;
        written.push(path);
    }
    let abs = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let kind = |p: &Path| {
        if p.extension().is_some_and(|e| e == "parquet") {
            "parquet"
        } else {
            "jsonl"
        }
    };
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut job = format!(
        "# Guessed by `tidemark init` from the first {SAMPLE_ROWS} rows of each file: check the\n\
         # roles in schemas/, then `tidemark validate` and `tidemark run` this file.\n\
         name = {name:?}\n\
         schemas_dir = \"schemas\"\n\n\
         [time]\n\
         tick_ms = 1000\n\
         allowed_disorder_ms = {disorder}\n\
         idle_timeout_ms = 10000\n\
         max_lateness_ms = {lateness}\n\
         label_horizon_ms = {horizon}     # a window is final this long after it ends\n\
         retention_ms = {retention}\n",
        name = args.name,
        lateness = (disorder * 10).max(120_000),
        retention = 2 * horizon + 300_000,
    );
    for (i, stream) in Stream::ALL.into_iter().enumerate() {
        job.push_str(&format!(
            "\n[sources.{stream}]\nschema = \"{stream}.{version}\"\nkind = \"{}\"\npath = {:?}\n",
            kind(paths[i]),
            abs(paths[i])
        ));
    }
    job.push_str(&format!(
        "\n[[windows]]\nname = \"5m\"\nkind = \"tumbling\"\nsize_ms = 300000\n\n\
         [metrics]\nthreshold = 0.5\nsegments = [{}]\nentity_features = [{}]\n\n\
         [outputs]\ndir = {:?}\nformats = [\"jsonl\"]\nemit_interval_ms = 60000\nsummary = true\n",
        list(&segments),
        list(&entity_features),
        format!("out/{}", args.name),
    ));
    let job_path = dir.join(format!("{}.toml", args.name));
    write_new(&job_path, &job)?;
    // What was written must load: a guess that `validate` refuses is a bug here.
    crate::config::Job::load(&job_path)?;
    Ok(Guess {
        job: job_path,
        schemas: written,
        reasons: why,
    })
}

/// Writes `text` to a new file `path`: an existing file is the user's, not init's to replace.
fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
}

/// The most a sampled time goes back below the largest before it, in ms.
fn max_disorder(t: &Col) -> u64 {
    let mut newest = i64::MIN;
    let mut worst = 0;
    for i in 0..t.cells.len() {
        if let Some(x) = t.ms_at(i) {
            worst = worst.max(newest.saturating_sub(x));
            newest = newest.max(x);
        }
    }
    round_up(worst.max(0) as u64)
}

/// The largest (label time − event time) over sampled labels whose event was sampled.
fn label_latency(ev_id: &Col, ev_time: &Col, la_id: &Col, la_time: &Col) -> Option<u64> {
    let key = |c: &Sampled| format!("{c:?}");
    let events: std::collections::BTreeMap<String, i64> = (0..ev_id.cells.len())
        .filter_map(|i| Some((key(&ev_id.cells[i]), ev_time.ms_at(i)?)))
        .collect();
    (0..la_id.cells.len())
        .filter_map(|i| {
            let e = events.get(&key(&la_id.cells[i]))?;
            Some(la_time.ms_at(i)?.saturating_sub(*e).max(0) as u64)
        })
        .max()
}

/// `ms` rounded up to a whole second, minute or hour, as its size suggests.
fn round_up(ms: u64) -> u64 {
    let unit = match ms {
        0..=60_000 => 1_000,
        60_001..=3_600_000 => 60_000,
        _ => 3_600_000,
    };
    ms.div_ceil(unit) * unit
}
