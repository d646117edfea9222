//! Brings a registered model in MLflow up to date with a local registry.
//!
//! For every version of the local registry that MLflow does not hold (found by its
//! `tidemark.version` tag): a run in the experiment carrying its hyperparameters as parameters,
//! its canary-window metrics as metrics and its lineage as tags, with its MLflow model directory
//! as the run's `model` artifact; then a model version of the registered model from that
//! artifact, with the same tags. Then the aliases `champion` and `challenger` are set (or
//! removed) to match the local registry's. Nothing is created twice: a version already there is
//! kept, a run left unfinished by an interrupted sync is completed, and an alias that matches is
//! not touched. A version MLflow holds under the same name with another checksum is refused: two
//! registries publish to one registered model.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::artifact::model_files;
use super::client::MlflowError;
use super::Target;
use crate::registry::{Registry, VersionFile};

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// MLflow refused a call or could not be reached.
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    /// The local registry could not be read.
    #[error(transparent)]
    Registry(#[from] crate::error::Error),
}

/// What MLflow is known to hold of a registry, updated as a sync goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// tidemark version → MLflow model version number.
    pub versions: BTreeMap<String, String>,
    /// Alias → the tidemark version it names in MLflow (None: no such alias).
    pub aliases: BTreeMap<&'static str, Option<String>>,
    /// tidemark versions created in MLflow by this process.
    pub created: Vec<String>,
    /// Alias changes made by this process, e.g. `champion → v000004`.
    pub moved: Vec<String>,
    /// The experiment's id, once known.
    experiment: Option<String>,
}

/// The aliases tidemark keeps in MLflow.
pub const ALIASES: [&str; 2] = ["champion", "challenger"];

impl Progress {
    /// How many versions and aliases of `reg` MLflow is not known to hold.
    pub fn backlog(&self, reg: &Registry) -> Result<u64, crate::error::Error> {
        let missing = reg
            .versions()?
            .iter()
            .filter(|v| !self.versions.contains_key(*v))
            .count();
        let file = reg.read()?;
        let aliases = [&file.champion, &file.challenger]
            .iter()
            .zip(ALIASES)
            .filter(|(want, alias)| match (want, self.aliases.get(alias)) {
                // An alias to remove is pending only if MLflow is known to hold it.
                (None, known) => matches!(known, Some(Some(_))),
                (Some(_), known) => known != Some(*want),
            })
            .count();
        Ok((missing + aliases) as u64)
    }
}

/// Brings `target` up to date with `reg` (see the module doc), recording what it finds and does
/// in `progress`.
pub fn sync(reg: &Registry, target: &Target, progress: &mut Progress) -> Result<(), SyncError> {
    let c = &target.client;
    let name = target.registered_model.as_str();
    if name.contains(['\'', '\\']) {
        return Err(c
            .unexpected(format!(
                "registered model {name:?}: MLflow's search cannot name it (quotes or \
                 backslashes); set learn.mlflow.registered_model"
            ))
            .into());
    }
    // Versions this process already found in MLflow are not read or asked about again: a
    // sync after each change costs one round of calls per new version, not per version.
    let missing: Vec<String> = reg
        .versions()?
        .into_iter()
        .filter(|v| !progress.versions.contains_key(v))
        .collect();
    let experiment = match &progress.experiment {
        Some(e) => e.clone(),
        None => {
            let e = ensure_experiment(target)?;
            match c.post("mlflow/registered-models/create", &json!({ "name": name })) {
                Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => {}
                r => {
                    r?;
                }
            }
            progress.experiment = Some(e.clone());
            e
        }
    };
    let held = if missing.is_empty() {
        BTreeMap::new()
    } else {
        held_versions(target)?
    };
    for v in missing {
        let file = reg.version(&v)?;
        if let Some((number, checksum)) = held.get(&v) {
            if checksum != &file.checksum {
                return Err(MlflowError::Unexpected {
                    base: c.base().to_string(),
                    reason: format!(
                        "registered model {name:?} holds {v} as version {number} with checksum \
                         {checksum}, the registry {} has {}: do two registries publish to one \
                         registered model? (set learn.mlflow.registered_model)",
                        reg.dir().display(),
                        file.checksum
                    ),
                }
                .into());
            }
            progress.versions.insert(v, number.clone());
            continue;
        }
        let bytes = std::fs::read(reg.version_path(&v))
            .map_err(|e| crate::error::Error::io(reg.version_path(&v), e))?;
        let (run_id, artifact_uri) = finished_run(target, &experiment, &file, &bytes)?;
        let answer = c.post(
            "mlflow/model-versions/create",
            &json!({
                "name": name,
                "source": format!("{artifact_uri}/model"),
                "run_id": run_id,
                "tags": tag_list(&lineage(&file, &bytes)),
                "description": description(&file),
            }),
        )?;
        let number = c.field(&answer, "/model_version/version")?.to_string();
        tracing::info!(version = %v, mlflow_version = %number, "published to MLflow {name:?}");
        progress.versions.insert(v.clone(), number);
        progress.created.push(v);
    }
    let file = reg.read()?;
    let settled = ALIASES
        .into_iter()
        .zip([&file.champion, &file.challenger])
        .all(|(alias, want)| progress.aliases.get(alias) == Some(want));
    if settled {
        return Ok(());
    }
    let answer = c.get("mlflow/registered-models/get", &[("name", name)])?;
    let mut have: BTreeMap<String, String> = BTreeMap::new();
    for a in answer
        .pointer("/registered_model/aliases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(alias), Some(number)) = (
            a.get("alias").and_then(Value::as_str),
            a.get("version").and_then(Value::as_str),
        ) {
            have.insert(alias.to_string(), number.to_string());
        }
    }
    for (alias, want) in ALIASES.into_iter().zip([&file.champion, &file.challenger]) {
        // An alias naming a version MLflow does not hold yet waits for it.
        let want_number = want.as_ref().and_then(|v| progress.versions.get(v));
        match (want_number, have.get(alias)) {
            (Some(w), h) if h != Some(w) => {
                c.post(
                    "mlflow/registered-models/alias",
                    &json!({ "name": name, "alias": alias, "version": w }),
                )?;
                progress
                    .moved
                    .push(format!("{alias} → {}", want.as_deref().unwrap_or_default()));
            }
            (None, Some(_)) if want.is_none() => {
                c.delete(
                    "mlflow/registered-models/alias",
                    &json!({ "name": name, "alias": alias }),
                )?;
                progress.moved.push(format!("{alias} removed"));
            }
            (None, _) if want.is_some() => continue,
            _ => {}
        }
        progress.aliases.insert(alias, want.clone());
    }
    Ok(())
}

/// The experiment's id, creating it if needed.
fn ensure_experiment(target: &Target) -> Result<String, MlflowError> {
    let c = &target.client;
    let by_name = |c: &super::Client| {
        c.get(
            "mlflow/experiments/get-by-name",
            &[("experiment_name", target.experiment.as_str())],
        )
    };
    match by_name(c) {
        Ok(v) => return Ok(c.field(&v, "/experiment/experiment_id")?.to_string()),
        Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => {}
        Err(e) => return Err(e),
    }
    match c.post(
        "mlflow/experiments/create",
        &json!({ "name": target.experiment }),
    ) {
        Ok(v) => Ok(c.field(&v, "/experiment_id")?.to_string()),
        // Created meanwhile by another client.
        Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => {
            let v = by_name(c)?;
            Ok(c.field(&v, "/experiment/experiment_id")?.to_string())
        }
        Err(e) => Err(e),
    }
}

/// The registered model's versions that carry a `tidemark.version` tag: tidemark version →
/// (MLflow version number, checksum tag); of several, the earliest.
fn held_versions(target: &Target) -> Result<BTreeMap<String, (String, String)>, MlflowError> {
    let c = &target.client;
    let filter = format!("name='{}'", target.registered_model);
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut token = String::new();
    loop {
        let mut query = vec![("filter", filter.as_str()), ("max_results", "1000")];
        if !token.is_empty() {
            query.push(("page_token", token.as_str()));
        }
        let answer = c.get("mlflow/model-versions/search", &query)?;
        for mv in answer
            .get("model_versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let tags = tags_of(mv);
            let (Some(v), Some(number)) = (
                tags.get("tidemark.version"),
                mv.get("version").and_then(Value::as_str),
            ) else {
                continue;
            };
            let checksum = tags.get("tidemark.checksum").cloned().unwrap_or_default();
            let earlier = out.get(v).is_some_and(|(n, _)| {
                n.parse::<u64>().unwrap_or(u64::MAX) <= number.parse().unwrap_or(u64::MAX)
            });
            if !earlier {
                out.insert(v.clone(), (number.to_string(), checksum));
            }
        }
        match answer.get("next_page_token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => return Ok(out),
        }
    }
}

fn tags_of(v: &Value) -> BTreeMap<String, String> {
    v.get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t.get("key")?.as_str()?.to_string(),
                t.get("value")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The version's finished run: found by its tags, or created, filled and finished; returns its
/// id and artifact URI.
fn finished_run(
    target: &Target,
    experiment: &str,
    file: &VersionFile,
    bytes: &[u8],
) -> Result<(String, String), MlflowError> {
    let c = &target.client;
    let filter = format!(
        "tags.`tidemark.version` = '{}' and tags.`tidemark.checksum` = '{}'",
        file.version, file.checksum
    );
    let found = c.post(
        "mlflow/runs/search",
        &json!({ "experiment_ids": [experiment], "filter": filter, "max_results": 10 }),
    )?;
    let runs: Vec<&Value> = found
        .get("runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let finished = runs
        .iter()
        .find(|r| r.pointer("/info/status").and_then(Value::as_str) == Some("FINISHED"));
    if let Some(r) = finished {
        return Ok((
            c.field(r, "/info/run_id")?.to_string(),
            c.field(r, "/info/artifact_uri")?.to_string(),
        ));
    }
    let tags = lineage(file, bytes);
    let run = match runs.first() {
        // An interrupted sync's run: logging the same values again is allowed.
        Some(r) => (*r).clone(),
        None => c
            .post(
                "mlflow/runs/create",
                &json!({
                    "experiment_id": experiment,
                    "run_name": file.version,
                    "start_time": now_ms(),
                    "tags": tag_list(&tags),
                }),
            )?
            .get("run")
            .cloned()
            .unwrap_or(Value::Null),
    };
    let run_id = c.field(&run, "/info/run_id")?.to_string();
    let artifact_uri = c.field(&run, "/info/artifact_uri")?.to_string();
    let params = params(file);
    for chunk in params.chunks(100) {
        c.post(
            "mlflow/runs/log-batch",
            &json!({
                "run_id": run_id,
                "params": chunk.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            }),
        )?;
    }
    c.post(
        "mlflow/runs/log-batch",
        &json!({ "run_id": run_id, "metrics": metrics(file) }),
    )?;
    let Some(root) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
        return Err(MlflowError::Unexpected {
            base: c.base().to_string(),
            reason: format!(
                "the run's artifact location is {artifact_uri}: tidemark stores models through \
                 the tracking server's artifact proxy only (`mlflow server` serves it unless \
                 started with --no-serve-artifacts)"
            ),
        });
    };
    let root = root.trim_start_matches('/');
    for (path, content) in model_files(file, bytes) {
        c.put_artifact(&format!("{root}/model/{path}"), &content)?;
    }
    c.post(
        "mlflow/runs/update",
        &json!({ "run_id": run_id, "status": "FINISHED", "end_time": now_ms() }),
    )?;
    Ok((run_id, artifact_uri))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn tag_list(tags: &[(String, String)]) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

/// The version's lineage as tags: what it is, what it was trained on and how to reproduce it.
pub fn lineage(file: &VersionFile, bytes: &[u8]) -> Vec<(String, String)> {
    let l = &file.lineage;
    let t = |k: &str, v: String| (format!("tidemark.{k}"), v);
    vec![
        t("version", file.version.clone()),
        t("job", file.job.clone()),
        t("job_fingerprint", l.job_fingerprint.clone()),
        t(
            "parent",
            file.parent.clone().unwrap_or_else(|| "none".into()),
        ),
        t("checksum", file.checksum.clone()),
        t("file_sha256", crate::replay::segment::sha256_hex(bytes)),
        t("examples", file.examples.to_string()),
        t("trained_from_ts", file.trained_from_ts.to_string()),
        t("trained_through_ts", file.trained_through_ts.to_string()),
        t("replay_from_ts", l.from_ts.to_string()),
        t("replay_to_ts", l.to_ts.to_string()),
        t(
            "reproduce",
            format!(
                "tidemark replay <job file of {}> --from {} --to {}",
                file.job, l.from_ts, l.to_ts
            ),
        ),
    ]
}

fn description(file: &VersionFile) -> String {
    format!(
        "tidemark {} of job {}: {} examples with event times {}..={} ms; parent {}",
        file.version,
        file.job,
        file.examples,
        file.trained_from_ts,
        file.trained_through_ts,
        file.parent.as_deref().unwrap_or("none")
    )
}

/// The version's hyperparameters as MLflow parameters (see
/// [`VersionFile::hyperparameter_list`]).
pub fn params(file: &VersionFile) -> Vec<(String, String)> {
    file.hyperparameter_list()
}

/// The version's metrics: examples learned, weight norm, and its canary window's.
pub fn metrics(file: &VersionFile) -> Vec<Value> {
    let step: i64 = file
        .version
        .trim_start_matches('v')
        .parse()
        .unwrap_or_default();
    let ts = file.trained_through_ts as i64;
    let m = &file.metrics;
    [
        ("examples", Some(file.examples as f64)),
        ("weight_norm", Some(file.model.norm())),
        ("canary.window_examples", Some(m.window_examples as f64)),
        ("canary.log_loss", m.log_loss),
        ("canary.accuracy", m.accuracy),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.filter(|v| v.is_finite())
            .map(|v| json!({ "key": k, "value": v, "timestamp": ts, "step": step }))
    })
    .collect()
}
