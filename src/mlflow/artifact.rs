//! The MLflow model directory of a version: `MLmodel` in the `python_function` flavor, the
//! scoring module tidemark ships (`python/tidemark_pyfunc.py`), and the version file itself.
//!
//! `mlflow.pyfunc.load_model` puts `code/` on the path, imports `tidemark_pyfunc` and calls its
//! `_load_pyfunc("model.json")`; the module scores events as tidemark's model does. Every file
//! is a function of the version file alone, so publishing one twice writes the same bytes.

use crate::registry::VersionFile;

/// The scoring module, as shipped.
pub const PYFUNC: &str = include_str!("../../python/tidemark_pyfunc.py");

/// The files of `version`'s MLflow model directory: (path inside it, content); `bytes` is its
/// version file as the registry holds it.
pub fn model_files(version: &VersionFile, bytes: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mlmodel = format!(
        "artifact_path: model\n\
         flavors:\n  \
           python_function:\n    \
             loader_module: tidemark_pyfunc\n    \
             code: code\n    \
             data: model.json\n    \
             env:\n      \
               virtualenv: python_env.yaml\n\
         metadata:\n  \
           tidemark_version: {}\n  \
           tidemark_job: {}\n  \
           tidemark_checksum: {}\n",
        yaml_string(&version.version),
        yaml_string(&version.job),
        yaml_string(&version.checksum),
    );
    // The module needs only the standard library and pandas, which MLflow brings.
    let python_env =
        "python: \"3.11\"\nbuild_dependencies:\n  - pip\ndependencies:\n  - -r requirements.txt\n";
    vec![
        ("MLmodel", mlmodel.into_bytes()),
        ("code/tidemark_pyfunc.py", PYFUNC.as_bytes().to_vec()),
        ("model.json", bytes.to_vec()),
        ("python_env.yaml", python_env.as_bytes().to_vec()),
        ("requirements.txt", b"mlflow\npandas\n".to_vec()),
    ]
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}
