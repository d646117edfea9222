//! A user's own data as pandas and pyarrow write it: `uint64` ids, `uint8` labels, `timestamp[us]`
//! and `timestamp[ns]` times, `category` (dictionary) strings, narrow integer features, an index
//! column nobody declared; and the same data as JSON Lines with integer ids and ISO-8601 times.
//! Each runs end to end and writes exactly the changelogs of the same data in canonical types.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int16Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampNanosecondArray, UInt64Array, UInt8Array,
};
use common::*;

const T0: u64 = 1_767_225_600_000;
const N: u64 = 900;

/// One event of the fixture: (id, entity, time, amount, age_days, country, device).
struct Ev {
    id: u64,
    entity: String,
    t: u64,
    amount: f64,
    age: i16,
    country: &'static str,
    device: Option<&'static str>,
}

fn events() -> Vec<Ev> {
    (1..=N)
        .map(|i| Ev {
            id: 10_000_000_000 + i * 7,
            entity: format!("c{}", i % 11),
            t: T0 + i * 997,
            amount: ((i * 37) % 1000) as f64 / 8.0,
            age: (i % 300) as i16,
            country: ["US", "DE", "FR"][(i % 3) as usize],
            device: (!i.is_multiple_of(5)).then_some(["ios", "android"][(i % 2) as usize]),
        })
        .collect()
}

fn score(e: &Ev) -> f64 {
    ((e.id * 53) % 1000) as f64 / 1000.0
}

fn labeled(e: &Ev) -> Option<(u8, u64)> {
    (!e.id.is_multiple_of(3)).then(|| ((e.id % 2) as u8, e.t + 5_000 + (e.id % 13) * 1_000))
}

fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Every fixture time is on 2026-01-01 (T0 is its midnight; N events span 15 minutes).
    assert!(ms - T0 < 86_400_000);
    format!("2026-01-01T{h:02}:{m:02}:{s:02}.{:03}Z", ms % 1000)
}

/// How a JSON Lines fixture spells its values.
struct Spelling {
    /// An event id.
    id: fn(u64) -> String,
    /// The time of events, predictions and labels.
    times: [fn(u64) -> String; 3],
    /// A label.
    label: fn(u8) -> String,
    /// Appended to each event object (fields the schema does not declare).
    extra: &'static str,
}

/// Writes the fixture as JSON Lines, spelled as `s` says.
fn write_jsonl(d: &Path, s: &Spelling) {
    let mut ev = Vec::new();
    let mut pr = Vec::new();
    let mut la = Vec::new();
    for e in &events() {
        let device = e
            .device
            .map(|x| format!(r#","device":"{x}""#))
            .unwrap_or_default();
        ev.push(format!(
            r#"{{"event_id":{},"entity":"{}","event_time":{},"amount":{},"age_days":{},"country":"{}"{device}{}}}"#,
            (s.id)(e.id),
            e.entity,
            (s.times[0])(e.t),
            e.amount,
            e.age,
            e.country,
            s.extra
        ));
        pr.push(format!(
            r#"{{"event_id":{},"model_version":"m1","score":{},"prediction_time":{}}}"#,
            (s.id)(e.id),
            score(e),
            (s.times[1])(e.t + 10)
        ));
        if let Some((l, t)) = labeled(e) {
            la.push(format!(
                r#"{{"event_id":{},"label":{},"label_time":{}}}"#,
                (s.id)(e.id),
                (s.label)(l),
                (s.times[2])(t)
            ));
        }
    }
    write_lines(d, "events.jsonl", &ev);
    write_lines(d, "predictions.jsonl", &pr);
    write_lines(d, "labels.jsonl", &la);
}

/// The canonical form: `events.v1` and friends, string ids, epoch-ms integers.
fn write_canonical(d: &Path) {
    write_jsonl(
        d,
        &Spelling {
            id: |id| format!("\"{id}\""),
            times: [|t| t.to_string(); 3],
            label: |l| l.to_string(),
            extra: "",
        },
    );
}

/// As JSON Lines from a user's pipeline: integer ids, ISO-8601 times in three spellings,
/// boolean labels, an undeclared field.
fn write_json_integers(d: &Path) {
    write_jsonl(
        d,
        &Spelling {
            id: |id| id.to_string(),
            times: [
                |t| format!("\"{}\"", iso(t)),
                |t| format!("\"{}\"", iso(t).replace('T', " ")),
                |t| format!("\"{}\"", iso(t).replace('Z', "+00:00")),
            ],
            label: |l| (l == 1).to_string(),
            extra: r#","note":"from the warehouse""#,
        },
    );
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    // Several record batches and row groups, as a large file has.
    for start in (0..batch.num_rows()).step_by(256) {
        w.write(&batch.slice(start, 256.min(batch.num_rows() - start)))
            .unwrap();
        w.flush().unwrap();
    }
    w.close().unwrap();
}

/// As pandas writes a DataFrame with `to_parquet`: the types pandas and pyarrow choose.
fn write_pandas_parquet(d: &Path) {
    let evs = events();
    let col = |a: ArrayRef| a;
    let ids = |v: &[&Ev]| {
        col(Arc::new(UInt64Array::from_iter_values(
            v.iter().map(|e| e.id),
        )))
    };
    let all: Vec<&Ev> = evs.iter().collect();
    let utc = |v: Vec<i64>| TimestampMicrosecondArray::from(v).with_timezone("UTC");
    let events = RecordBatch::try_from_iter(vec![
        ("event_id", ids(&all)),
        (
            "entity",
            col(Arc::new(StringArray::from_iter_values(
                all.iter().map(|e| e.entity.as_str()),
            ))),
        ),
        (
            "event_time",
            col(Arc::new(utc(all
                .iter()
                .map(|e| e.t as i64 * 1000)
                .collect()))),
        ),
        (
            "amount",
            col(Arc::new(Float64Array::from_iter_values(
                all.iter().map(|e| e.amount),
            ))),
        ),
        (
            "age_days",
            col(Arc::new(Int16Array::from_iter_values(
                all.iter().map(|e| e.age),
            ))),
        ),
        (
            "country",
            col(Arc::new(
                all.iter()
                    .map(|e| e.country)
                    .collect::<DictionaryArray<Int8Type>>(),
            )),
        ),
        (
            "device",
            col(Arc::new(
                all.iter()
                    .map(|e| e.device)
                    .collect::<DictionaryArray<Int32Type>>(),
            )),
        ),
        (
            "__index_level_0__",
            col(Arc::new(Int64Array::from_iter_values(0..N as i64))),
        ),
    ])
    .unwrap();
    write_parquet(&d.join("events.parquet"), &events);
    let predictions = RecordBatch::try_from_iter(vec![
        ("event_id", ids(&all)),
        (
            "model_version",
            col(Arc::new(
                all.iter()
                    .map(|_| "m1")
                    .collect::<DictionaryArray<Int32Type>>(),
            )),
        ),
        (
            "score",
            col(Arc::new(Float64Array::from_iter_values(
                all.iter().map(|e| score(e)),
            ))),
        ),
        (
            "prediction_time",
            col(Arc::new(TimestampNanosecondArray::from_iter_values(
                all.iter().map(|e| (e.t as i64 + 10) * 1_000_000),
            ))),
        ),
    ])
    .unwrap();
    write_parquet(&d.join("predictions.parquet"), &predictions);
    let with_labels: Vec<(&Ev, (u8, u64))> = evs
        .iter()
        .filter_map(|e| labeled(e).map(|l| (e, l)))
        .collect();
    let labels = RecordBatch::try_from_iter(vec![
        (
            "event_id",
            col(Arc::new(UInt64Array::from_iter_values(
                with_labels.iter().map(|(e, _)| e.id),
            ))),
        ),
        (
            "label",
            col(Arc::new(UInt8Array::from_iter_values(
                with_labels.iter().map(|(_, (l, _))| *l),
            ))),
        ),
        (
            "label_time",
            col(Arc::new(utc(with_labels
                .iter()
                .map(|(_, (_, t))| *t as i64 * 1000)
                .collect()))),
        ),
    ])
    .unwrap();
    write_parquet(&d.join("labels.parquet"), &labels);
}

/// Copies the `*.v1` input schemas into `dir` as `*.own`, the id declared `uint64` and the
/// times as the user's (`string` for ISO-8601 text).
fn own_schemas(dir: &Path, time_type: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for stream in ["events", "predictions", "labels"] {
        let text =
            std::fs::read_to_string(schemas_dir().join(format!("{stream}.v1.json"))).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["id"] = format!("{stream}.own").into();
        for f in v["fields"].as_array_mut().unwrap() {
            match f["role"].as_str().unwrap() {
                "id" => f["type"] = "uint64".into(),
                "time" => f["type"] = time_type.into(),
                _ => {}
            }
        }
        std::fs::write(
            dir.join(format!("{stream}.own.json")),
            serde_json::to_string_pretty(&v).unwrap(),
        )
        .unwrap();
    }
}

/// A job over `<stream>.<ext>` in `d`, with schemas `<stream>.<schema>` from `schemas`.
fn job(d: &Path, kind: &str, ext: &str, schemas: &Path, schema: &str) -> std::path::PathBuf {
    let mut text = String::new();
    text.push_str(&format!(
        "name = \"own\"\nschemas_dir = \"{}\"\n[time]\ntick_ms = 1000\nallowed_disorder_ms = 2000\n\
         idle_timeout_ms = 10000\nmax_lateness_ms = 60000\nlabel_horizon_ms = 120000\n\
         retention_ms = 600000\n",
        schemas.display()
    ));
    for stream in ["events", "predictions", "labels"] {
        text.push_str(&format!(
            "[sources.{stream}]\nschema = \"{stream}.{schema}\"\nkind = \"{kind}\"\npath = \"{stream}.{ext}\"\n"
        ));
    }
    text.push_str(
        "[[windows]]\nname = \"5m\"\nkind = \"tumbling\"\nsize_ms = 300000\n\
         [metrics]\nsegments = [\"country\"]\nentity_features = [\"amount\", \"age_days\"]\n\
         [outputs]\ndir = \"out\"\nformats = [\"jsonl\"]\nsummary = false\n",
    );
    let path = d.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every changelog in `out`, by name.
fn changelogs(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn run_in(d: &Path, job: &Path) -> (Vec<(String, Vec<u8>)>, Vec<(String, i64, i64, i64)>) {
    let out = d.join("out");
    let summary = run_job(job, 2, &out);
    let counts = summary
        .ingest
        .iter()
        .map(|r| (r.stream.clone(), r.read, r.accepted, r.dead_lettered))
        .collect();
    (changelogs(&out), counts)
}

#[test]
fn pandas_parquet_and_integer_json_run_like_canonical_types() {
    let canonical = tempfile::tempdir().unwrap();
    write_canonical(canonical.path());
    let (want, want_counts) = run_in(
        canonical.path(),
        &job(canonical.path(), "jsonl", "jsonl", &schemas_dir(), "v1"),
    );
    let labels = events().iter().filter(|e| labeled(e).is_some()).count() as i64;
    assert_eq!(
        want_counts,
        vec![
            ("events".into(), N as i64, N as i64, 0),
            ("labels".into(), labels, labels, 0),
            ("predictions".into(), N as i64, N as i64, 0),
        ]
    );
    let quality = String::from_utf8(
        want.iter()
            .find(|(n, _)| n == "quality.jsonl")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert!(quality.contains(r#""segment":"country=US""#), "{quality}");

    let pandas = tempfile::tempdir().unwrap();
    write_pandas_parquet(pandas.path());
    let schemas = pandas.path().join("schemas");
    own_schemas(&schemas, "timestamp_ms");
    let integer_ids = |job: &Path| {
        tidemark::outputs::rows::Format::new(&tidemark::config::Job::load(job).unwrap()).integer_ids
    };
    assert!(integer_ids(&job(
        pandas.path(),
        "parquet",
        "parquet",
        &schemas,
        "own"
    )));
    assert!(!integer_ids(&job(
        canonical.path(),
        "jsonl",
        "jsonl",
        &schemas_dir(),
        "v1"
    )));
    let (got, counts) = run_in(
        pandas.path(),
        &job(pandas.path(), "parquet", "parquet", &schemas, "own"),
    );
    // The same outputs, byte for byte, and the same counts.
    let same = |what: &str, got: &[(String, Vec<u8>)], counts: &[(String, i64, i64, i64)]| {
        assert_eq!(counts, &want_counts[..], "{what}");
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(got), names(&want), "{what}");
        for ((name, a), (_, b)) in want.iter().zip(got) {
            assert!(
                a == b,
                "{what}: {name} differs:\n{}",
                String::from_utf8_lossy(b)
            );
        }
    };
    same("pandas Parquet", &got, &counts);

    let json = tempfile::tempdir().unwrap();
    write_json_integers(json.path());
    let schemas = json.path().join("schemas");
    own_schemas(&schemas, "string");
    let (got, counts) = run_in(
        json.path(),
        &job(json.path(), "jsonl", "jsonl", &schemas, "own"),
    );
    same("JSON Lines with integer ids", &got, &counts);
}

/// `tidemark init` on pandas-shaped Parquet and on JSON Lines with integer ids and ISO times:
/// the roles it guesses are the right ones, `validate` accepts the job it writes, and the job
/// runs, accepting every record.
#[test]
fn init_guesses_a_job_that_runs_on_the_users_files() {
    for (kind, write) in [
        ("parquet", write_pandas_parquet as fn(&Path)),
        ("jsonl", write_json_integers),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .current_dir(d)
            .args(["init", "--name", "shop", "--out", "job"])
            .args(["--events", &format!("events.{kind}")])
            .args(["--predictions", &format!("predictions.{kind}")])
            .args(["--labels", &format!("labels.{kind}")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{stdout}");
        assert!(
            out.status.success(),
            "{kind}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for said in [
            "event_id is the event id",
            "events: event_time is the time",
            "events: entity is the entity",
            "predictions: model_version is the model version",
            "predictions: score is the score",
            "labels: label is the label",
            "events: amount is a numeric feature",
            "events: age_days is a numeric feature",
            "events: country is a categorical feature",
            "events: device is a categorical feature",
            "tidemark validate",
        ] {
            assert!(stdout.contains(said), "{kind}: {said:?} not in:\n{stdout}");
        }
        // An existing file is not replaced.
        let again = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .current_dir(d)
            .args(["init", "--name", "shop", "--out", "job"])
            .args(["--events", &format!("events.{kind}")])
            .args(["--predictions", &format!("predictions.{kind}")])
            .args(["--labels", &format!("labels.{kind}")])
            .output()
            .unwrap();
        assert!(!again.status.success(), "{kind}: init replaced its files");

        let job = d.join("job/shop.toml");
        let validate = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["validate"])
            .arg(&job)
            .output()
            .unwrap();
        assert!(validate.status.success(), "{kind}: {validate:?}");
        let summary = run_job(&job, 2, &d.join("out"));
        let labels = events().iter().filter(|e| labeled(e).is_some()).count() as i64;
        let counts: Vec<_> = summary
            .ingest
            .iter()
            .map(|r| (r.stream.as_str(), r.read, r.accepted))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("events", N as i64, N as i64),
                ("labels", labels, labels),
                ("predictions", N as i64, N as i64)
            ],
            "{kind}"
        );
        assert!(!summary.quality.is_empty(), "{kind}");
    }
}

/// Files that do not hold what a stream needs are refused naming the file, the missing role
/// and the columns there are; nothing is written.
#[test]
fn init_names_what_it_could_not_find() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_canonical(d);
    // Predictions without a model column.
    let preds: Vec<String> = events()
        .iter()
        .map(|e| {
            format!(
                r#"{{"event_id":"{}","score":{},"prediction_time":{}}}"#,
                e.id,
                score(e),
                e.t + 10
            )
        })
        .collect();
    write_lines(d, "predictions.jsonl", &preds);
    let e = tidemark::init::init(&tidemark::init::InitArgs {
        events: d.join("events.jsonl"),
        predictions: d.join("predictions.jsonl"),
        labels: d.join("labels.jsonl"),
        out: d.join("job"),
        name: "x".into(),
    })
    .expect_err("refused")
    .to_string();
    assert!(
        e.contains("predictions.jsonl")
            && e.contains("model version")
            && e.contains(
                "event_id (JSON string), prediction_time (JSON integer), score (JSON float)"
            ),
        "{e}"
    );
    assert!(!d.join("job").exists(), "nothing written");
}
