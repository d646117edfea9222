//! Publishing to an MLflow Model Registry: every version of the local registry becomes a
//! model version of a registered model, loadable and servable by MLflow, and the aliases
//! `champion` and `challenger` follow the local registry's.
//!
//! The local registry is the source of truth and is always written first. Publishing to MLflow
//! is a reconciliation ([`sync::sync`]): it reads the local registry and brings MLflow up to
//! date, creating what is missing and nothing twice, so the same call serves a live job (after
//! each change, retried with backoff while MLflow is down, [`publisher`]), a restart, and
//! `tidemark models sync`.

pub mod artifact;
pub mod client;
pub mod publisher;
pub mod sync;

use serde::{Deserialize, Serialize};

pub use client::{Client, MlflowError};

/// `[learn.mlflow]`: where versions are published in MLflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowSpec {
    /// The tracking server, `http://host:port` (its artifact proxy stores the models).
    pub tracking_uri: String,
    /// The registered model the versions belong to; default: the job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_model: Option<String>,
    /// The experiment that holds one run per version; default: the registered model's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
}

/// Where one registry publishes: the server, the registered model and the experiment.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server.
    pub client: Client,
    /// The registered model.
    pub registered_model: String,
    /// The experiment of the versions' runs.
    pub experiment: String,
}

impl Target {
    /// The target of `spec` for the job named `job`.
    pub fn new(spec: &MlflowSpec, job: &str) -> Target {
        let registered_model = spec
            .registered_model
            .clone()
            .unwrap_or_else(|| job.to_string());
        Target {
            client: Client::new(&spec.tracking_uri),
            experiment: spec
                .experiment
                .clone()
                .unwrap_or_else(|| registered_model.clone()),
            registered_model,
        }
    }
}

/// The file in a registry directory that names where its job publishes in MLflow, so that an
/// operator's `models promote|rollback|resume` and `models sync` reach the same place.
pub const TARGET_FILE: &str = "MLFLOW.json";

impl Target {
    /// The target as a spec with every default resolved.
    pub fn spec(&self) -> MlflowSpec {
        MlflowSpec {
            tracking_uri: self.client.base().to_string(),
            registered_model: Some(self.registered_model.clone()),
            experiment: Some(self.experiment.clone()),
        }
    }

    /// Records the target in the registry in `dir` (if it changed).
    pub fn remember(&self, dir: &std::path::Path) -> crate::error::Result<()> {
        let path = dir.join(TARGET_FILE);
        let bytes = serde_json::to_vec_pretty(&self.spec()).expect("specs serialize");
        if std::fs::read(&path).ok().as_deref() == Some(bytes.as_slice()) {
            return Ok(());
        }
        crate::replay::segment::write_atomic(&path, &bytes)
    }

    /// The target a job recorded in the registry in `dir`, if any.
    pub fn remembered(dir: &std::path::Path) -> crate::error::Result<Option<Target>> {
        let path = dir.join(TARGET_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::error::Error::io(&path, e)),
        };
        let spec: MlflowSpec = serde_json::from_slice(&bytes).map_err(|e| {
            crate::error::Error::registry(&path, format!("not an MLflow target: {e}"))
        })?;
        check(&spec).map_err(|(_, reason)| crate::error::Error::registry(&path, reason))?;
        Ok(Some(Target::new(&spec, "")))
    }
}

/// Why `spec` cannot work, if it cannot: the key and the reason.
pub fn check(spec: &MlflowSpec) -> Result<(), (&'static str, String)> {
    let uri = spec.tracking_uri.trim();
    if !(uri.starts_with("http://") || uri.starts_with("https://")) || uri.len() < 10 {
        return Err((
            "learn.mlflow.tracking_uri",
            format!(
                "{uri:?} is not an http:// or https:// URL of an MLflow tracking server \
                 (file and database stores are not supported: start `mlflow server`)"
            ),
        ));
    }
    for (key, v) in [
        ("learn.mlflow.registered_model", &spec.registered_model),
        ("learn.mlflow.experiment", &spec.experiment),
    ] {
        if let Some(v) = v {
            if v.trim().is_empty() || v.len() > 256 || v.contains(['\'', '\\']) {
                return Err((
                    key,
                    "must be 1 to 256 characters, without quotes or backslashes".into(),
                ));
            }
        }
    }
    Ok(())
}
