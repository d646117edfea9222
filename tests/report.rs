//! The HTML report and model cards over a real job's outputs: a small variant of
//! `dataflows/demo.toml` (generator, drift and online learning) run once by the `tidemark`
//! binary, then rendered and checked against the changelogs it wrote; the page is also loaded
//! in headless Chromium.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tidemark::registry::card::card;
use tidemark::registry::Registry;
use tidemark::report::render;

/// The demo variant's output and registry directories.
struct Demo {
    root: PathBuf,
    out: PathBuf,
    registry: PathBuf,
}

/// Runs the demo variant once per test binary (in `CARGO_TARGET_TMPDIR`, replaced each run).
fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-demo");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let (out, registry) = (root.join("out"), root.join("registry"));
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/demo.toml");
        let mut text = std::fs::read_to_string(&demo).unwrap();
        // Fewer events (20 minutes of event time), a reference before the generator's data
        // drift, no entity features or Parquet (not reported), and paths of our own.
        for (from, to) in [
            ("events = 60000", "events = 24000".to_string()),
            (
                "to = \"2026-01-01T00:10:00Z\"",
                "to = \"2026-01-01T00:05:00Z\"".to_string(),
            ),
            (
                "entity_features = [\"amount\", \"velocity\"]",
                "entity_features = []".to_string(),
            ),
            (
                "formats = [\"jsonl\", \"parquet\"]",
                "formats = [\"jsonl\"]".to_string(),
            ),
            (
                "registry = \"out/demo/registry\"",
                format!("registry = \"{}\"", registry.display()),
            ),
        ] {
            assert!(text.contains(from), "demo.toml no longer has {from}");
            text = text.replace(from, &to);
        }
        text = format!(
            "schemas_dir = \"{}\"\n{text}",
            common::schemas_dir().display()
        );
        let job = root.join("demo.toml");
        std::fs::write(&job, text).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg("run")
            .arg(&job)
            .arg("--out")
            .arg(&out)
            .arg("--no-progress")
            .args(["--metrics", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::wait_all(vec![child], Duration::from_secs(300));
        Demo {
            root,
            out,
            registry,
        }
    })
}

/// The lines of a changelog.
fn lines(out: &Path, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join(format!("{name}.jsonl"))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The retired (last) row of every window key of a windowed changelog.
fn retired(out: &Path, name: &str, key: &[&str]) -> BTreeMap<Vec<String>, Value> {
    let mut m = BTreeMap::new();
    for r in lines(out, name) {
        if r["status"] == "retired" && r["diff"] == 1 {
            let k: Vec<String> = key.iter().map(|c| r[*c].to_string()).collect();
            assert!(
                m.insert(k, r.clone()).is_none(),
                "one retirement per key: {r}"
            );
        }
    }
    m
}

/// The `<svg id="id">…</svg>` element of a page.
fn svg<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no svg {id}"));
    let end = start + html[start..].find("</svg>").unwrap() + "</svg>".len();
    &html[start..end]
}

/// Reverses the report's HTML escaping.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The attributes of every `<tag …>` element in `text` that has attribute `having`.
fn elements(text: &str, tag: &str, having: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let end = after.find('>').unwrap();
        let mut attrs = BTreeMap::new();
        let mut a = &after[..end];
        while let Some(eq) = a.find("=\"") {
            let name = a[..eq].trim().to_string();
            let close = a[eq + 2..].find('"').unwrap();
            attrs.insert(name, unescape(&a[eq + 2..eq + 2 + close]));
            a = &a[eq + 2 + close + 1..];
        }
        if attrs.contains_key(having) {
            out.push(attrs);
        }
        rest = &after[end..];
    }
    out
}

/// An attribute as a number.
fn number(e: &BTreeMap<String, String>, k: &str) -> f64 {
    e[k].parse()
        .unwrap_or_else(|_| panic!("{k}={:?} is not a number", e[k]))
}

/// The smallest window family of a changelog's rows.
/// The plotted points of a per-window chart: (segment, model version, window end) → value.
fn points_of(circles: &[BTreeMap<String, String>]) -> BTreeMap<(String, String, u64), f64> {
    circles
        .iter()
        .map(|e| {
            (
                (
                    e["data-segment"].clone(),
                    e["data-model-version"].clone(),
                    number(e, "data-window-end-ms") as u64,
                ),
                number(e, "data-value"),
            )
        })
        .collect()
}

fn smallest_family(rows: &[Value]) -> String {
    rows.iter()
        .filter_map(|r| {
            Some((
                r["window_end"].as_u64()? - r["window_start"].as_u64()?,
                r["window"].as_str()?.to_string(),
            ))
        })
        .min()
        .unwrap()
        .1
}

#[test]
fn the_report_is_self_contained_and_its_plots_hold_the_data_they_claim() {
    let d = demo();
    let started = Instant::now();
    let html = render(&d.out).unwrap();
    eprintln!("rendered {} bytes in {:?}", html.len(), started.elapsed());
    assert_eq!(html, render(&d.out).unwrap(), "deterministic");
    // Kept for a look: target/tmp/report-demo/report.html.
    std::fs::write(d.root.join("report.html"), &html).unwrap();
    assert!(html.len() < 5_000_000, "bounded: {} bytes", html.len());

    // Self-contained: nothing fetched, no scripts.
    for bad in ["src=\"http", "href=\"http", "<script", "@import", "url("] {
        assert!(!html.contains(bad), "the page has {bad}");
    }
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let v = &html[i + attr.len()..];
            assert!(
                v.starts_with("data:") || v.starts_with('#'),
                "{attr} points outside the page: {}",
                &v[..v.len().min(60)]
            );
        }
    }
    for id in [
        "summary", "quality", "drift", "labels", "models", "shadow", "alerts",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id}"
        );
    }
    for id in [
        "quality-accuracy",
        "quality-log-loss",
        "quality-auc",
        "quality-brier",
        "drift-heatmap",
        "label-latency",
        "label-completeness",
        "model-timeline",
    ] {
        svg(&html, id);
    }

    // Summary: the ingest counts of every stream.
    let mut ingest: BTreeMap<String, Value> = BTreeMap::new();
    for r in lines(&d.out, "ingest") {
        if r["diff"] == 1 {
            ingest.insert(r["stream"].as_str().unwrap().to_string(), r);
        }
    }
    assert_eq!(ingest.len(), 3);
    for (stream, r) in &ingest {
        let row = format!(
            "<tr><td>{stream}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r["read"], r["accepted"], r["dead_lettered"]
        );
        assert!(html.contains(&row), "summary lacks {row}");
    }

    // Shadow: the last row written for each window of the smallest family, per segment and
    // production model, is a point with its exact agreement and divergence.
    let shadow_lines = lines(&d.out, "shadow");
    let shadow_family = smallest_family(&shadow_lines);
    let mut last: BTreeMap<(String, String, u64), Value> = BTreeMap::new();
    for r in shadow_lines {
        if r["diff"] == 1 && r["window"] == shadow_family.as_str() {
            let k = (
                r["segment"].as_str().unwrap().to_string(),
                r["model_version"].as_str().unwrap().to_string(),
                r["window_end"].as_u64().unwrap(),
            );
            last.insert(k, r);
        }
    }
    for (col, id) in [
        ("agreement", "shadow-agreement"),
        ("mean_abs_score_diff", "shadow-mean-abs-score-diff"),
    ] {
        let points = points_of(&elements(svg(&html, id), "circle", "data-value"));
        let want: BTreeMap<(String, String, u64), f64> = last
            .iter()
            .filter_map(|(k, r)| Some((k.clone(), r[col].as_f64()?)))
            .collect();
        assert!(want.len() > 20, "{id}: only {} values", want.len());
        assert_eq!(points, want, "{id}");
    }

    // Quality: every retired window of the smallest family, per segment and model version,
    // is a point with its exact value, for each metric.
    let q_lines = lines(&d.out, "quality");
    let family = smallest_family(&q_lines);
    let quality = retired(
        &d.out,
        "quality",
        &[
            "window",
            "window_start",
            "window_end",
            "segment",
            "model_version",
        ],
    );
    let versions: BTreeSet<&str> = quality
        .values()
        .map(|r| r["model_version"].as_str().unwrap())
        .collect();
    assert!(
        versions.contains("online"),
        "the online model has quality rows"
    );
    for (col, id) in [
        ("accuracy", "quality-accuracy"),
        ("log_loss", "quality-log-loss"),
        ("auc", "quality-auc"),
        ("brier", "quality-brier"),
    ] {
        let circles = elements(svg(&html, id), "circle", "data-value");
        let points = points_of(&circles);
        let mut expected = 0;
        for r in quality.values().filter(|r| r["window"] == family.as_str()) {
            let Some(v) = r[col].as_f64() else { continue };
            expected += 1;
            let k = (
                r["segment"].as_str().unwrap().to_string(),
                r["model_version"].as_str().unwrap().to_string(),
                r["window_end"].as_u64().unwrap(),
            );
            assert_eq!(points.get(&k), Some(&v), "{id}: {k:?}");
        }
        assert!(expected > 20, "{id}: only {expected} values");
        assert_eq!(circles.len(), expected, "{id}: a point per value, no more");
        // The online model's lines are dashed, the production model's solid.
        assert!(svg(&html, id).contains("stroke-dasharray=\"5 3\""));

        // Every concept-drift detection is a marker at its event time.
        let detections: Vec<u64> = lines(&d.out, "drift_detections")
            .iter()
            .map(|r| r["event_time"].as_u64().unwrap())
            .collect();
        assert!(!detections.is_empty(), "the demo detects drift");
        let mut marked: Vec<u64> = elements(svg(&html, id), "line", "data-event-time-ms")
            .iter()
            .map(|e| number(e, "data-event-time-ms") as u64)
            .collect();
        let mut want = detections.clone();
        marked.sort_unstable();
        want.sort_unstable();
        assert_eq!(marked, want, "{id}: one marker per detection");

        // Every window of the family in which a drift alert fired is marked at its end.
        let fired: BTreeSet<u64> = lines(&d.out, "drift_alerts")
            .iter()
            .filter(|r| r["diff"] == 1 && r["window"] == family.as_str())
            .map(|r| r["window_end"].as_u64().unwrap())
            .collect();
        assert!(!fired.is_empty());
        let alert_marks: BTreeSet<u64> = elements(svg(&html, id), "line", "data-window-end-ms")
            .iter()
            .filter(|e| e["class"] == "marker drift-alert")
            .map(|e| number(e, "data-window-end-ms") as u64)
            .collect();
        assert_eq!(alert_marks, fired, "{id}: drift-alert windows");
    }

    // Drift heatmap: one cell per feature and window of the smallest family (segment all),
    // holding the retired PSI.
    let drift_lines = lines(&d.out, "drift");
    let dfam = smallest_family(&drift_lines);
    let drift = retired(
        &d.out,
        "drift",
        &[
            "window",
            "window_start",
            "window_end",
            "segment",
            "feature",
            "model_version",
        ],
    );
    let features: BTreeSet<String> = drift_lines
        .iter()
        .filter(|r| r["window"] == dfam.as_str() && r["segment"] == "all")
        .map(|r| match r["model_version"].as_str() {
            Some(mv) => format!("{} ({mv})", r["feature"].as_str().unwrap()),
            None => r["feature"].as_str().unwrap().to_string(),
        })
        .collect();
    let windows: BTreeSet<u64> = drift_lines
        .iter()
        .filter(|r| r["window"] == dfam.as_str())
        .map(|r| r["window_end"].as_u64().unwrap())
        .collect();
    let heat = svg(&html, "drift-heatmap");
    let cells = elements(heat, "rect", "data-feature");
    assert!(
        features.len() >= 5 && windows.len() >= 4,
        "{features:?} {windows:?}"
    );
    assert_eq!(cells.len(), features.len() * windows.len());
    assert!(heat.contains(&format!(
        "data-features=\"{}\" data-windows=\"{}\"",
        features.len(),
        windows.len()
    )));
    let by_cell: BTreeMap<(String, u64), String> = cells
        .iter()
        .map(|e| {
            (
                (
                    e["data-feature"].clone(),
                    number(e, "data-window-end-ms") as u64,
                ),
                e["data-psi"].clone(),
            )
        })
        .collect();
    for r in drift
        .values()
        .filter(|r| r["window"] == dfam.as_str() && r["segment"] == "all")
    {
        let f = match r["model_version"].as_str() {
            Some(mv) => format!("{} ({mv})", r["feature"].as_str().unwrap()),
            None => r["feature"].as_str().unwrap().to_string(),
        };
        let psi = &by_cell[&(f.clone(), r["window_end"].as_u64().unwrap())];
        match r["psi"].as_f64() {
            Some(v) => assert_eq!(psi.parse::<f64>().unwrap(), v, "{f}"),
            None => assert_eq!(psi, "", "{f}"),
        }
    }

    // Label health: latency bars and completeness points of the smallest family.
    let lh_lines = lines(&d.out, "label_health");
    let lfam = smallest_family(&lh_lines);
    let lh = retired(
        &d.out,
        "label_health",
        &["window", "window_start", "window_end", "segment"],
    );
    let bars: BTreeSet<(u64, String, u64)> =
        elements(svg(&html, "label-latency"), "rect", "data-quantile")
            .iter()
            .map(|e| {
                (
                    number(e, "data-window-end-ms") as u64,
                    e["data-quantile"].clone(),
                    number(e, "data-ms") as u64,
                )
            })
            .collect();
    let mut n_bars = 0;
    for r in lh
        .values()
        .filter(|r| r["window"] == lfam.as_str() && r["segment"] == "all")
    {
        for (col, q) in [
            ("latency_p50_ms", "p50"),
            ("latency_p95_ms", "p95"),
            ("latency_p99_ms", "p99"),
            ("latency_max_ms", "max"),
        ] {
            if let Some(ms) = r[col].as_u64() {
                n_bars += 1;
                let k = (r["window_end"].as_u64().unwrap(), q.to_string(), ms);
                assert!(bars.contains(&k), "latency bar {k:?}");
            }
        }
    }
    assert!(n_bars >= 12);
    assert_eq!(bars.len(), n_bars);
    let completeness: BTreeMap<(String, u64), f64> =
        elements(svg(&html, "label-completeness"), "circle", "data-value")
            .iter()
            .map(|e| {
                (
                    (
                        e["data-segment"].clone(),
                        number(e, "data-window-end-ms") as u64,
                    ),
                    number(e, "data-value"),
                )
            })
            .collect();
    let mut n_points = 0;
    for r in lh.values().filter(|r| r["window"] == lfam.as_str()) {
        if let Some(v) = r["labeled_fraction"].as_f64() {
            n_points += 1;
            let k = (
                r["segment"].as_str().unwrap().to_string(),
                r["window_end"].as_u64().unwrap(),
            );
            assert_eq!(completeness.get(&k), Some(&v), "completeness {k:?}");
        }
    }
    assert_eq!(completeness.len(), n_points);

    // Timeline: one mark per model_versions and model_decisions line.
    let timeline = svg(&html, "model-timeline");
    let marks = elements(timeline, "g", "data-kind");
    let mv_lines = lines(&d.out, "model_versions");
    let md_lines = lines(&d.out, "model_decisions");
    assert!(mv_lines.len() >= 3 && md_lines.len() >= 3);
    let vmarks: Vec<&String> = marks
        .iter()
        .filter(|e| e["data-kind"] == "version")
        .map(|e| &e["data-version"])
        .collect();
    let want: Vec<&str> = mv_lines
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(vmarks, want);
    let dmarks: Vec<(String, String)> = marks
        .iter()
        .filter(|e| e["data-kind"] == "decision")
        .map(|e| (e["data-seq"].clone(), e["data-action"].clone()))
        .collect();
    let want: Vec<(String, String)> = md_lines
        .iter()
        .map(|r| {
            (
                r["seq"].to_string(),
                r["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(dmarks, want);

    // Alerts: one row per firing in alerts.jsonl (when the job wrote one), and the drift
    // alerts table.
    if d.out.join("alerts.jsonl").exists() {
        let firings = lines(&d.out, "alerts")
            .iter()
            .filter(|r| r["diff"] == 1 && r["state"] != "resolved")
            .count();
        let table = &html[html.find("<table id=\"alerts-table\"").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert_eq!(
            table.matches("<tr>").count(),
            firings + 1,
            "header and a row per firing"
        );
    }
    assert!(html.contains("<table id=\"drift-alerts-table\""));
}

#[test]
fn missing_changelogs_become_sentences_and_bad_data_is_escaped_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let html = render(dir.path()).unwrap();
    for file in [
        "quality.jsonl",
        "label_health.jsonl",
        "drift.jsonl",
        "drift_alerts.jsonl",
        "ingest.jsonl",
        "alerts.jsonl",
        "model_versions.jsonl or model_decisions.jsonl",
    ] {
        assert!(
            html.contains(&format!(
                "There is no <code>{file}</code> in this directory"
            )),
            "{file}"
        );
    }
    assert!(!html.contains("<svg"), "no plots without data");

    // Strings from the data are escaped; unknown alert columns are named, missing ones dashed.
    let w = |seg: &str, acc: f64| {
        format!(
            "{{\"ts\":2000,\"diff\":1,\"window\":\"1m\",\"window_start\":0,\"window_end\":60000,\"segment\":\"{seg}\",\"model_version\":\"m<1>\",\"status\":\"retired\",\"count\":10,\"accuracy\":{acc},\"log_loss\":0.5,\"auc\":null}}"
        )
    };
    std::fs::write(
        dir.path().join("quality.jsonl"),
        format!(
            "{}\n{}\n",
            w("<script>alert(1)</script>", 0.25),
            w("all", 0.75)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("alerts.jsonl"),
        concat!(
            "{\"ts\":1,\"diff\":1,\"rule\":\"acc<0.5\",\"severity\":\"P1\",\"state\":\"firing\",\"metric\":\"accuracy\",\"window\":\"1m\",\"window_start\":0,\"window_end\":60000,\"segment\":\"all\",\"value\":0.25,\"threshold\":0.5,\"shiny\":true}\n",
            "{\"ts\":2,\"diff\":1,\"rule\":\"acc<0.5\",\"severity\":\"P1\",\"state\":\"resolved\",\"metric\":\"accuracy\",\"window\":\"1m\",\"window_start\":60000,\"window_end\":120000,\"segment\":\"all\",\"value\":0.75,\"threshold\":0.5}\n",
            "{\"ts\":2,\"diff\":1,\"rule\":\"labels\",\"severity\":\"P3\",\"state\":\"firing\",\"metric\":\"labeled_fraction\",\"window\":\"1m\",\"window_start\":60000,\"window_end\":120000,\"segment\":\"all\"}\n",
        ),
    )
    .unwrap();
    let html = render(dir.path()).unwrap();
    assert!(!html.contains("<script"), "data is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("data-model-version=\"m&lt;1&gt;\""));
    let acc = svg(&html, "quality-accuracy");
    assert_eq!(elements(acc, "circle", "data-value").len(), 2);
    assert!(acc.contains("data-value=\"0.25\"") && acc.contains("data-value=\"0.75\""));
    let table = &html[html.find("<table id=\"alerts-table\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), 3, "two firings: {table}");
    assert!(table.contains("<td>firing</td>") && table.contains("<td>resolved</td>"));
    assert!(table.contains("acc&lt;0.5") && table.contains("still firing"));
    assert!(html.contains("also has the columns shiny"));
    assert!(html.contains("2 alerts fired (1 still firing at the end)"));

    // A malformed line is refused, naming file and line.
    std::fs::write(
        dir.path().join("drift.jsonl"),
        "{\"ts\":1,\"diff\":1,\"window\":\"1m\"}\n{\"ts\":1,\"diff\":\n",
    )
    .unwrap();
    let e = render(dir.path()).unwrap_err().to_string();
    assert!(e.contains("drift.jsonl") && e.contains("line 2"), "{e}");
    // So is a directory that does not exist.
    let e = render(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(e, tidemark::Error::Io { .. }), "{e}");
}

/// Waits for `child`, killing it after `limit`.
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_report_renders_in_a_headless_browser_without_console_errors() {
    if std::env::var("TIDEMARK_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("TIDEMARK_SKIP_BROWSER=1: not loading the report in a browser");
        return;
    }
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "this test loads the report in headless Chromium at /usr/bin/chromium: install it \
         (`apt-get install chromium`), or set TIDEMARK_SKIP_BROWSER=1 to skip this test"
    );
    let d = demo();
    let html = render(&d.out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let (dom_path, log_path) = (dir.path().join("dom.html"), dir.path().join("stderr.txt"));
    let child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&dom_path).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_bounded(child, Duration::from_secs(120));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {log}");
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    for id in [
        "quality-accuracy",
        "quality-log-loss",
        "quality-auc",
        "drift-heatmap",
        "label-latency",
        "label-completeness",
        "model-timeline",
    ] {
        assert!(
            dom.contains(&format!("<svg id=\"{id}\"")),
            "the DOM lacks svg {id}"
        );
    }
    // The parser kept every element: the markup is well formed.
    for tag in [
        "<circle ",
        "<rect ",
        "<line ",
        "<path ",
        "<g ",
        "<table ",
        "<section ",
    ] {
        assert_eq!(
            dom.matches(tag).count(),
            html.matches(tag).count(),
            "{tag} elements in the DOM"
        );
    }
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
}

#[test]
fn model_cards_describe_every_published_version() {
    let d = demo();
    let reg = Registry::existing(&d.registry).unwrap();
    let file = reg.read().unwrap();
    let versions = reg.versions().unwrap();
    assert!(versions.len() >= 3, "{versions:?}");
    assert!(file.champion.is_some(), "the demo promotes a champion");
    let mut statuses = BTreeSet::new();
    for v in &versions {
        let vf = reg.version(v).unwrap();
        let with = card(&d.registry, v, Some(&d.out)).unwrap();
        let without = card(&d.registry, v, None).unwrap();
        assert_eq!(
            with,
            card(&d.registry, v, Some(&d.out)).unwrap(),
            "deterministic"
        );
        let expected = if file.champion.as_deref() == Some(v.as_str()) {
            "champion"
        } else if file.challenger.as_deref() == Some(v.as_str()) {
            "challenger"
        } else {
            "retired"
        };
        statuses.insert(expected);
        for c in [&with, &without] {
            assert!(c.starts_with(&format!("# Model card: {v}\n")), "{c}");
            assert!(c.contains(&format!("Status: **{expected}**")), "{v}: {c}");
            assert!(
                c.contains(&format!(
                    "Training range: {} to {}",
                    tidemark::runtime::iso_time(vf.trained_from_ts),
                    tidemark::runtime::iso_time(vf.trained_through_ts)
                )),
                "{c}"
            );
            assert!(
                c.contains(&format!("Examples learned: {}.", vf.examples)),
                "{c}"
            );
            assert!(c.contains(&format!(
                "canary window (the last {} held-out examples",
                vf.metrics.window_examples
            )));
            // Every decision naming it is in its history.
            for h in file
                .history
                .iter()
                .filter(|h| h.version.as_deref() == Some(v.as_str()))
            {
                let seq = h.seq.unwrap();
                assert!(
                    c.contains(&format!(
                        "| {seq} | {} | {} |",
                        tidemark::runtime::iso_time(h.ts.unwrap()),
                        h.action.replace('_', "\\_")
                    )),
                    "{v}: decision {seq} missing: {c}"
                );
            }
        }
        assert!(
            without.contains("no output directory was given"),
            "{without}"
        );
        assert!(
            with.contains("| online | all |"),
            "per-segment metrics: {with}"
        );
        assert!(
            with.contains("Largest PSI against the job's reference"),
            "{with}"
        );
        assert!(
            with.contains("Lowest accuracy of model version online"),
            "{with}"
        );
    }
    assert!(
        statuses.contains("champion") && statuses.contains("retired"),
        "{statuses:?}"
    );
    assert!(card(&d.registry, "v999999", None).is_err());
}

#[test]
fn long_runs_are_thinned_deterministically_and_the_page_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (n, minute) = (1200u64, 60_000u64);
    let mut quality = String::new();
    let mut drift = String::new();
    for i in 0..n {
        let (s, e) = (i * minute, (i + 1) * minute);
        for seg in ["all", "country=US"] {
            quality.push_str(&format!(
                "{{\"ts\":{e},\"diff\":1,\"window\":\"1m\",\"window_start\":{s},\"window_end\":{e},\"segment\":\"{seg}\",\"model_version\":\"m1\",\"status\":\"retired\",\"count\":10,\"accuracy\":{},\"log_loss\":0.5,\"auc\":0.7,\"brier\":0.2}}\n",
                (i % 100) as f64 / 100.0
            ));
        }
        for f in ["amount", "country"] {
            drift.push_str(&format!(
                "{{\"ts\":{e},\"diff\":1,\"window\":\"1m\",\"window_start\":{s},\"window_end\":{e},\"segment\":\"all\",\"feature\":\"{f}\",\"model_version\":null,\"status\":\"retired\",\"psi\":{}}}\n",
                (i % 7) as f64 / 10.0
            ));
        }
    }
    std::fs::write(dir.path().join("quality.jsonl"), quality).unwrap();
    std::fs::write(dir.path().join("drift.jsonl"), drift).unwrap();
    let html = render(dir.path()).unwrap();
    assert_eq!(html, render(dir.path()).unwrap());
    assert!(html.contains("Window family 1m has 1200 windows; 500 of them"));
    let acc = svg(&html, "quality-accuracy");
    let circles = elements(acc, "circle", "data-value");
    assert_eq!(circles.len(), 2 * 500, "500 windows per series");
    let ends: BTreeSet<u64> = circles
        .iter()
        .map(|e| number(e, "data-window-end-ms") as u64)
        .collect();
    assert!(
        ends.contains(&minute) && ends.contains(&(n * minute)),
        "first and last kept"
    );
    let cells = elements(svg(&html, "drift-heatmap"), "rect", "data-feature");
    assert_eq!(cells.len(), 2 * 500);
}
