//! A small client of MLflow's REST API (tracking, model registry, proxied artifacts).
//!
//! Only the calls tidemark's publishing needs, over `ureq` with bounded timeouts. Errors say
//! which call failed against which server, and keep MLflow's own error code and message.

use std::time::Duration;

use serde_json::{json, Value};

/// Why an MLflow call failed.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The server could not be reached or did not answer in time.
    #[error("MLflow at {base}: {call}: {reason}")]
    Unreachable {
        /// The tracking URI.
        base: String,
        /// The call, e.g. `POST runs/create`.
        call: String,
        /// The transport's message.
        reason: String,
    },
    /// The server answered with an error.
    #[error("MLflow at {base}: {call}: HTTP {status} {code}: {message}")]
    Api {
        /// The tracking URI.
        base: String,
        /// The call.
        call: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_ALREADY_EXISTS`), or empty.
        code: String,
        /// MLflow's message, or the body.
        message: String,
    },
    /// The server's answer is not what MLflow's API documents, or the two sides disagree.
    #[error("MLflow at {base}: {reason}")]
    Unexpected {
        /// The tracking URI.
        base: String,
        /// What was wrong.
        reason: String,
    },
}

impl MlflowError {
    /// MLflow's error code, for an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A connection to one MLflow tracking server.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// A client of the server at `tracking_uri` (`http://host:port`, optionally with a path).
    pub fn new(tracking_uri: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            base: tracking_uri.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// The tracking URI.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/2.0/{path}", self.base)
    }

    /// An answer or state that MLflow's API does not allow.
    pub fn unexpected(&self, reason: impl Into<String>) -> MlflowError {
        MlflowError::Unexpected {
            base: self.base.clone(),
            reason: reason.into(),
        }
    }

    fn answer(
        &self,
        call: String,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, MlflowError> {
        let mut r = r.map_err(|e| MlflowError::Unreachable {
            base: self.base.clone(),
            call: call.clone(),
            reason: e.to_string(),
        })?;
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .read_to_string()
            .map_err(|e| MlflowError::Unreachable {
                base: self.base.clone(),
                call: call.clone(),
                reason: format!("reading the answer: {e}"),
            })?;
        let value: Value = if body.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str(&body) {
                Ok(v) => v,
                Err(_) if status >= 400 => Value::Null,
                Err(e) => {
                    return Err(self.unexpected(format!("{call}: the answer is not JSON: {e}")))
                }
            }
        };
        if status >= 400 {
            let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
            return Err(MlflowError::Api {
                base: self.base.clone(),
                call,
                status,
                code: text("error_code").unwrap_or_default(),
                message: text("message").unwrap_or_else(|| body.chars().take(300).collect()),
            });
        }
        Ok(value)
    }

    /// `GET api/2.0/<path>` with query parameters.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let mut req = self.agent.get(&self.url(path));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        self.answer(format!("GET {path}"), req.call())
    }

    /// `POST api/2.0/<path>` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, MlflowError> {
        let r = self.agent.post(&self.url(path)).send_json(body);
        self.answer(format!("POST {path}"), r)
    }

    /// `DELETE api/2.0/<path>` with a JSON body.
    pub fn delete(&self, path: &str, body: &Value) -> Result<Value, MlflowError> {
        let r = self
            .agent
            .delete(&self.url(path))
            .force_send_body()
            .send_json(body);
        self.answer(format!("DELETE {path}"), r)
    }

    /// Uploads one artifact through the server's artifact proxy (`mlflow-artifacts:/<path>`).
    pub fn put_artifact(&self, path: &str, bytes: &[u8]) -> Result<(), MlflowError> {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{path}", self.base);
        let r = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .send(bytes);
        self.answer(format!("PUT mlflow-artifacts/artifacts/{path}"), r)
            .map(|_| ())
    }

    /// Reads a string field of an answer, or says which is missing.
    pub fn field<'a>(&self, v: &'a Value, pointer: &str) -> Result<&'a str, MlflowError> {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| self.unexpected(format!("the answer has no {pointer}: {v}")))
    }
}
