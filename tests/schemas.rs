//! The schema files in `schemas/` match the Rust records: input schemas load and fit the
//! generator, and every output row writes exactly its schema's columns with matching types.

mod common;

use serde_json::Value;
use tidemark::dataflow::detect::DetectionRow;
use tidemark::dataflow::drift::{AlertRow, DKey, DriftAgg, DriftRow, ExactNumeric, Method};
use tidemark::dataflow::features::{FKey, FeatureAgg, FeatureRow, FeatureStat};
use tidemark::dataflow::labels::{LKey, LabelAgg, LabelRow};
use tidemark::dataflow::learn::ShadowRow;
use tidemark::dataflow::quality::{AucExact, QKey, QualityAgg, QualityRow};
use tidemark::dataflow::windows::{Status, Win};
use tidemark::learn::learner::{Action, By, DecisionRow, QuarantineRow, VersionRow, WindowStats};
use tidemark::outputs::rows::{Columns, Format, IngestRow, OutputRow};
use tidemark::outputs::writer::{arrow_schema, output_schema_id};
use tidemark::records::{DeadLetter, Position};
use tidemark::schema::{FieldType, InputSchema, SchemaFile, Stream};

fn format() -> Format {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_767_225_600_000;
    let events: Vec<String> = (0..20)
        .map(|i| {
            common::event(
                &format!("e{i}"),
                "a",
                t + i,
                i as f64,
                ["US", "DE"][i as usize % 2],
            )
        })
        .collect();
    let predictions: Vec<String> = (0..20)
        .map(|i| common::prediction(&format!("e{i}"), i as f64 / 20.0, t + i))
        .collect();
    common::write_lines(dir.path(), "events.jsonl", &events);
    common::write_lines(dir.path(), "predictions.jsonl", &predictions);
    common::write_lines(dir.path(), "labels.jsonl", &[]);
    let job = common::file_job(
        dir.path(),
        &common::Times::default(),
        "[[windows]]\nname = \"1m\"\nkind = \"tumbling\"\nsize_ms = 60000\n",
        "[metrics]\nentity_features = [\"amount\", \"velocity\"]\n\
         [drift]\nfeatures = [\"amount\", \"country\"]\n\
         reference = { events = [\"events.jsonl\"], predictions = [\"predictions.jsonl\"] }\n\
         [[drift.alerts]]\nstatistic = \"psi\"\nabove = 0.2\nseverity = \"P2\"\n",
    );
    let job = tidemark::config::Job::load(&job).unwrap();
    Format::new(&job)
}

fn type_fits(ty: FieldType, v: &Value, nullable: bool) -> bool {
    if v.is_null() {
        return nullable;
    }
    match ty {
        FieldType::String => v.is_string(),
        FieldType::Float64 => v.is_number(),
        FieldType::Int64 => v.is_i64(),
        FieldType::Uint64 | FieldType::TimestampMs => v.is_u64(),
        FieldType::Bool => v.is_boolean(),
        FieldType::ListInt64 => v.as_array().is_some_and(|a| a.iter().all(|x| x.is_i64())),
        FieldType::ListFloat64 => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x.is_number() || x.is_null())),
    }
}

fn check<R: OutputRow>(rows: &[R]) {
    let file = SchemaFile::load(&common::schemas_dir(), &output_schema_id(R::NAME)).unwrap();
    // The Parquet writer builds its Arrow schema from the same file.
    assert_eq!(arrow_schema(&file).fields().len(), file.fields.len());
    let f = format();
    for row in rows {
        let mut out: Vec<Columns> = Vec::new();
        row.columns(&f, &mut out);
        assert!(!out.is_empty());
        for cols in out {
            let line: Value =
                serde_json::from_str(&tidemark::outputs::rows::json_line(7, -1, &cols)).unwrap();
            let names: Vec<&str> = line
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut expected: Vec<&str> = file.fields.iter().map(|f| f.name.as_str()).collect();
            let mut got = names.clone();
            got.sort();
            expected.sort();
            assert_eq!(got, expected, "columns of {}", R::NAME);
            for field in &file.fields {
                assert!(
                    type_fits(field.ty, &line[&field.name], field.nullable),
                    "{}.{} = {}",
                    R::NAME,
                    field.name,
                    line[&field.name]
                );
            }
        }
    }
}

#[test]
fn input_schemas_load_and_fit_the_generator() {
    let dir = common::schemas_dir();
    let ev = InputSchema::load(&dir, "events.v1", Stream::Events).unwrap();
    tidemark::generator::check_events_schema(&ev).unwrap();
    InputSchema::load(&dir, "predictions.v1", Stream::Predictions).unwrap();
    InputSchema::load(&dir, "labels.v1", Stream::Labels).unwrap();
    let err = InputSchema::load(&dir, "labels.v1", Stream::Events)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("labels.v1.json") && err.contains("stream"),
        "{err}"
    );
}

#[test]
fn output_rows_match_their_schema_files() {
    let win = Win {
        family: 0,
        start: 1_767_225_600_000,
        end: 1_767_225_660_000,
    };
    let agg = QualityAgg {
        count: 3,
        positives: 1,
        predicted_positive: 2,
        correct: 2,
        logloss_nano: 2_000_000_000,
        brier_nano: 500_000_000,
        calibration: vec![(1, 100_000, 0), (0, 0, 0)],
        auc_positive: vec![0, 1],
        auc_negative: vec![2, 0],
    };
    let key = QKey {
        win,
        segment: "all".into(),
        model: "m1".into(),
    };
    check(&[
        QualityRow {
            key: key.clone(),
            status: Status::Provisional,
            agg: agg.clone(),
            exact: None,
        },
        QualityRow {
            key,
            status: Status::Final,
            agg,
            exact: Some(AucExact {
                positives: 1,
                negatives: 2,
                twice_concordant: 4,
            }),
        },
    ]);
    let lkey = LKey {
        win,
        segment: "country=US".into(),
    };
    check(&[
        LabelRow {
            key: lkey.clone(),
            status: Status::Provisional,
            agg: LabelAgg {
                events: 2,
                labeled: 1,
                within_horizon: 1,
                relabeled: 0,
                orphans: 0,
                late: 1,
                latency: vec![(1000, 1)].into(),
            },
        },
        LabelRow {
            key: lkey,
            status: Status::Final,
            agg: LabelAgg::default(),
        },
    ]);
    let stat = FeatureStat {
        n: 2,
        sum: 3_000_000,
        sum_sq: 5_000_000_000_000,
        min: 1_000_000,
        max: 2_000_000,
    };
    check(&[FeatureRow {
        key: FKey {
            win,
            entity: "a".into(),
        },
        status: Status::Final,
        agg: FeatureAgg {
            events: 2,
            last_time: win.start + 5,
            stats: vec![stat, FeatureStat::default()],
        },
    }]);
    check(&[DeadLetter {
        stream: "events".into(),
        position: Position {
            source: "f.jsonl".into(),
            offset: 3,
        },
        field: "event_time".into(),
        reason: "negative time -5".into(),
        raw: "{}".into(),
    }]);
    let dkey = |feature: u16, model: &str| DKey {
        win,
        segment: "all".into(),
        feature,
        model: model.into(),
    };
    let numeric = DriftAgg {
        nulls: 1,
        cells: (0..100).map(|i| (i % 3 == 0) as u64).collect(),
        cats: Vec::new(),
    };
    let drift_rows = [
        DriftRow {
            key: dkey(0, ""),
            status: Status::Provisional,
            agg: numeric.clone(),
            exact: None,
        },
        DriftRow {
            key: dkey(0, ""),
            status: Status::Final,
            agg: numeric.clone(),
            exact: Some(ExactNumeric {
                n: 34,
                distinct: 30,
                ks: 100,
                wasserstein: 5_000_000,
            }),
        },
        DriftRow {
            key: dkey(1, ""),
            status: Status::Final,
            agg: DriftAgg {
                nulls: 0,
                cells: Default::default(),
                cats: vec![("FR".into(), 3), ("US".into(), 40)],
            },
            exact: None,
        },
        DriftRow {
            key: dkey(2, "m1"),
            status: Status::Retired,
            agg: numeric,
            exact: None,
        },
    ];
    check(&drift_rows);
    check(&[AlertRow {
        key: dkey(1, ""),
        status: Status::Final,
        rule: 0,
        value: 0.7f64.to_bits(),
        count: 43,
        method: Method::Exact,
    }]);
    let alert = |firing: bool, model: &str, feature: &str, baseline: Option<f64>| {
        tidemark::alerts::AlertEvent {
            rule: 0,
            segment: "all".into(),
            model: model.into(),
            feature: feature.into(),
            win,
            firing,
            value: 0.7f64.to_bits(),
            bound: 0.2f64.to_bits(),
            baseline: baseline.map(f64::to_bits),
            count: 43,
        }
    };
    check(&[
        alert(true, "", "amount", None),
        alert(false, "m1", "score", Some(0.5)),
    ]);
    check(&[DetectionRow {
        model: "m1".into(),
        detector: 2,
        position: 120,
        event_id: "e7".into(),
        event_time: win.start + 9,
        detail: "ddm drift: …".into(),
    }]);
    check(&[
        IngestRow {
            stream: "events".into(),
            read: 3,
            accepted: 2,
            dead_lettered: 1,
            duplicates: 1,
            ..Default::default()
        },
        IngestRow {
            stream: "labels".into(),
            read: 5,
            accepted: 5,
            too_late: 1,
            orphaned: 1,
            retention_to_hold_ms: Some(700_000),
            ..Default::default()
        },
    ]);
    let window = WindowStats {
        n: 10,
        online_loss_nano: 5_000_000_000,
        online_correct: 8,
        champion_n: 4,
        champion_loss_nano: 3_000_000_000,
        champion_correct: 3,
    };
    let empty = WindowStats::default();
    check(&[VersionRow {
        version: "v000002".into(),
        parent: Some("v000001".into()),
        trained_from_ts: win.start,
        trained_through_ts: win.end,
        examples: 4000,
        checksum: "ab".repeat(32),
        norm_bits: 1.5f64.to_bits(),
        window: window.clone(),
    }]);
    check(&[
        DecisionRow {
            seq: 3,
            action: Action::Block,
            version: Some("v000002".into()),
            champion: Some("v000001".into()),
            reason: "trimmed log-loss …".into(),
            window: window.clone(),
            psi_bits: Some(0.01f64.to_bits()),
            by: By::Job,
        },
        DecisionRow {
            seq: 1,
            action: Action::RateBoost,
            version: None,
            champion: None,
            reason: "drift".into(),
            window: empty,
            psi_bits: None,
            by: By::Operator(7),
        },
    ]);
    check(&[QuarantineRow {
        event_id: "e1".into(),
        entity: "a".into(),
        event_time: win.start,
        reason: "entity_cap: …".into(),
    }]);
    check(&[
        ShadowRow {
            key: QKey {
                win,
                segment: "all".into(),
                model: "m1".into(),
            },
            count: 4,
            agree: 3,
            abs_diff: 400_000,
            diff: -100_000,
        },
        ShadowRow {
            key: QKey {
                win,
                segment: "all".into(),
                model: "m1".into(),
            },
            count: 0,
            agree: 0,
            abs_diff: 0,
            diff: 0,
        },
    ]);
}

/// Every field of every output schema (`schemas/out.*.json`, the documentation of the output
/// columns) has a non-empty `doc`.
#[test]
fn every_output_field_has_a_doc() {
    let dir = common::schemas_dir();
    let mut ids: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| {
            let id = name.strip_suffix(".json")?;
            id.starts_with("out.").then(|| id.to_string())
        })
        .collect();
    ids.sort();
    assert!(!ids.is_empty(), "no output schema in {}", dir.display());
    let mut undocumented = Vec::new();
    for id in &ids {
        let file = SchemaFile::load(&dir, id).unwrap();
        undocumented.extend(
            file.fields
                .iter()
                .filter(|f| f.doc.trim().is_empty())
                .map(|f| format!("{id}.{}", f.name)),
        );
    }
    assert!(
        undocumented.is_empty(),
        "fields without a doc: {undocumented:?}"
    );
}

/// With an events schema that declares integer ids, an event id in an output prints as the
/// integer it was read as; its Parquet column (a string column) holds the digits.
#[test]
fn integer_event_ids_print_as_integers() {
    use tidemark::config::OutputFormat;
    let mut f = format();
    let row = QuarantineRow {
        event_id: "18446744073709551615".into(),
        entity: "a".into(),
        event_time: 1_767_225_600_000,
        reason: "entity_cap: …".into(),
    };
    let columns = |f: &Format| {
        let mut out: Vec<Columns> = Vec::new();
        row.columns(f, &mut out);
        out.pop().unwrap()
    };
    let id = |cols: &Columns| {
        cols.iter()
            .find(|(k, _)| *k == "event_id")
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(id(&columns(&f)), Value::from("18446744073709551615"));
    f.integer_ids = true;
    let cols = columns(&f);
    assert_eq!(id(&cols), Value::from(u64::MAX));

    let dir = tempfile::tempdir().unwrap();
    let mut w = tidemark::outputs::writer::ChangelogWriter::create(
        dir.path(),
        &common::schemas_dir(),
        "quarantine",
        &[OutputFormat::Jsonl, OutputFormat::Parquet],
        None,
    )
    .unwrap();
    w.write(7, 1, &cols).unwrap();
    w.finish().unwrap();
    let line = std::fs::read_to_string(dir.path().join("quarantine.jsonl")).unwrap();
    assert!(
        line.contains(r#""event_id":18446744073709551615"#),
        "{line}"
    );
    let file = std::fs::File::open(dir.path().join("quarantine.parquet")).unwrap();
    let mut reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batch = reader.next().unwrap().unwrap();
    let ids = batch.column_by_name("event_id").unwrap();
    let ids = ids
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    assert_eq!(ids.value(0), "18446744073709551615");
}
