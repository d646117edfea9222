//! Scores events with a model version, as the job's online model scores them: the reference
//! the MLflow model (`python/tidemark_pyfunc.py`) is checked against.

use std::io::{BufRead, Write};

use crate::error::{Error, Result};
use crate::learn::model::Input;
use crate::records::Record;
use crate::registry::VersionFile;
use crate::schema::InputSchema;

/// Lines scored and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scored {
    /// Events scored.
    pub scored: u64,
    /// Lines refused (each reported on `errors`).
    pub refused: u64,
}

/// Checks that `version` reads its features where `schema` has them.
pub fn fits(version: &VersionFile, schema: &InputSchema) -> Result<()> {
    let f = &version.model.features;
    for (kind, wanted, have) in [
        ("numeric", &f.numeric, &schema.numeric),
        ("categorical", &f.categorical, &schema.categorical),
    ] {
        for (name, at) in wanted {
            if have.get(*at) != Some(name) {
                return Err(Error::registry(
                    std::path::Path::new(&version.version),
                    format!(
                        "reads the {kind} feature {name:?} as feature {at} of its events, the \
                         schema {} has {:?} there: score with the job that trained it",
                        schema.id,
                        have.get(*at)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Scores every JSON line of `input` (events of `schema`), writing `{"event_id", "score"}` lines
/// to `out`; a line that does not decode is reported on `errors` with its line number, field and
/// reason, and skipped.
pub fn score_lines(
    version: &VersionFile,
    schema: &InputSchema,
    input: impl BufRead,
    mut out: impl Write,
    mut errors: impl Write,
    source: &str,
) -> Result<Scored> {
    fits(version, schema)?;
    let io = |e| Error::io(std::path::Path::new(source), e);
    let mut n = Scored::default();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        match crate::decode::decode_json_line(schema, &line) {
            Ok(Record::Event(e)) => {
                let x = version.model.encode(&Input {
                    numeric: &e.numeric,
                    categorical: &e.categorical,
                });
                let score = version.model.predict(&x);
                let row = serde_json::json!({ "event_id": e.id.as_str(), "score": score });
                writeln!(out, "{row}").map_err(io)?;
                n.scored += 1;
            }
            Ok(_) => unreachable!("an events schema decodes events"),
            Err((field, reason)) => {
                writeln!(errors, "{source}:{}: {field}: {reason}", i + 1).map_err(io)?;
                n.refused += 1;
            }
        }
    }
    Ok(n)
}
