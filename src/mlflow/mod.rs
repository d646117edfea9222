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
