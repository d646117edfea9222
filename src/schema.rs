//! Record schemas: the files in `schemas/` and the field roles that drive decoding.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which input stream a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Feature records.
    Events,
    /// What the serving system answered.
    Predictions,
    /// Ground truth, arriving late.
    Labels,
}

impl Stream {
    /// All input streams, in their canonical order.
    pub const ALL: [Stream; 3] = [Stream::Events, Stream::Predictions, Stream::Labels];

    /// The stream's name as used in job files and outputs.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Events => "events",
            Stream::Predictions => "predictions",
            Stream::Labels => "labels",
        }
    }

    /// The stream named `name`, if any.
    pub fn parse(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The stream's index in [`Stream::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The physical type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// UTF-8 string.
    String,
    /// 64-bit float.
    Float64,
    /// Signed 64-bit integer.
    Int64,
    /// Unsigned 64-bit integer.
    Uint64,
    /// Epoch milliseconds (a non-negative integer).
    TimestampMs,
    /// Boolean.
    Bool,
    /// List of 64-bit integers.
    ListInt64,
    /// List of 64-bit floats.
    ListFloat64,
}

impl FieldType {
    /// The type's name in schema files.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Float64 => "float64",
            FieldType::Int64 => "int64",
            FieldType::Uint64 => "uint64",
            FieldType::TimestampMs => "timestamp_ms",
            FieldType::Bool => "bool",
            FieldType::ListInt64 => "list_int64",
            FieldType::ListFloat64 => "list_float64",
        }
    }
}

/// The types a field of `role` may be declared as in an input schema. The declared type says
/// what the values mean; each role reads every physical type that can carry them
/// ([`crate::decode::accepted`]).
pub fn declared_types(role: Role) -> &'static [FieldType] {
    use FieldType::*;
    match role {
        Role::Id | Role::Entity | Role::Model | Role::Categorical => &[String, Int64, Uint64],
        Role::Time => &[TimestampMs, Int64, Uint64, String],
        Role::Numeric | Role::Score => &[Float64, Int64, Uint64],
        Role::Label => &[Int64, Uint64, Bool, Float64],
        Role::Output => &[],
    }
}

/// What an input field means to tidemark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The event id (join key).
    Id,
    /// The entity an event belongs to.
    Entity,
    /// The record's own event time.
    Time,
    /// A numeric feature.
    Numeric,
    /// A categorical feature.
    Categorical,
    /// The model version that produced a prediction.
    Model,
    /// The prediction score, a probability in [0, 1].
    Score,
    /// The ground-truth label, 0 or 1.
    Label,
    /// An output column (output schemas only).
    Output,
}

impl Role {
    /// The role's name in schema files.
    pub fn name(self) -> &'static str {
        match self {
            Role::Id => "id",
            Role::Entity => "entity",
            Role::Time => "time",
            Role::Numeric => "numeric",
            Role::Categorical => "categorical",
            Role::Model => "model",
            Role::Score => "score",
            Role::Label => "label",
            Role::Output => "output",
        }
    }
}

/// One field of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Column / JSON key name.
    pub name: String,
    /// Physical type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Meaning of the field.
    #[serde(default = "default_role")]
    pub role: Role,
    /// Whether the field may be null or absent.
    #[serde(default)]
    pub nullable: bool,
    /// Human description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub doc: String,
}

fn default_role() -> Role {
    Role::Output
}

/// A schema file from `schemas/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaFile {
    /// Schema id, e.g. `events.v1`; equals the file stem.
    pub id: String,
    /// The input stream it describes, if it is an input schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    /// Human description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub doc: String,
    /// Fields in column order.
    pub fields: Vec<FieldSpec>,
}

impl SchemaFile {
    /// Loads `<dir>/<id>.json`.
    pub fn load(dir: &Path, id: &str) -> Result<SchemaFile> {
        let path = dir.join(format!("{id}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let schema: SchemaFile = serde_json::from_str(&text)
            .map_err(|e| Error::config(&path, format!("line {}", e.line()), e.to_string()))?;
        if schema.id != id {
            return Err(Error::config(
                &path,
                "id",
                format!("is {:?}, expected {id:?} (the file name)", schema.id),
            ));
        }
        Ok(schema)
    }

    fn path_hint(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.json", self.id))
    }
}

/// What a source does with a record that carries a field its schema does not declare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtraFields {
    /// Read the declared fields and ignore the rest (schemas evolve by adding fields).
    #[default]
    Ignore,
    /// Send the record to dead letters, naming the field.
    DeadLetter,
}

/// An input schema resolved into the positions of its roles.
#[derive(Clone, PartialEq)]
pub struct InputSchema {
    /// The schema id.
    pub id: String,
    /// The stream it describes.
    pub stream: Stream,
    /// All fields.
    pub fields: Vec<FieldSpec>,
    /// Names of the numeric features, in schema order.
    pub numeric: Vec<String>,
    /// Names of the categorical features, in schema order.
    pub categorical: Vec<String>,
    /// What the source does with undeclared fields (set by the job's source, not the file).
    pub extra_fields: ExtraFields,
}

// Written out so that a schema with the default `extra_fields` prints (and fingerprints its
// job) as it did before the policy existed: replay buffers of earlier runs stay the job's.
impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("InputSchema");
        d.field("id", &self.id)
            .field("stream", &self.stream)
            .field("fields", &self.fields)
            .field("numeric", &self.numeric)
            .field("categorical", &self.categorical);
        if self.extra_fields != ExtraFields::Ignore {
            d.field("extra_fields", &self.extra_fields);
        }
        d.finish()
    }
}

impl InputSchema {
    /// Loads and checks an input schema for `stream`.
    pub fn load(dir: &Path, id: &str, stream: Stream) -> Result<InputSchema> {
        let file = SchemaFile::load(dir, id)?;
        let path = file.path_hint(dir);
        match file.stream {
            Some(s) if s == stream => {}
            other => {
                return Err(Error::config(
                    &path,
                    "stream",
                    format!("is {other:?}, but the job uses this schema for {stream}"),
                ))
            }
        }
        let required: &[Role] = match stream {
            Stream::Events => &[Role::Id, Role::Entity, Role::Time],
            Stream::Predictions => &[Role::Id, Role::Model, Role::Score, Role::Time],
            Stream::Labels => &[Role::Id, Role::Label, Role::Time],
        };
        for role in required {
            let n = file.fields.iter().filter(|f| f.role == *role).count();
            if n != 1 {
                return Err(Error::config(
                    &path,
                    "fields",
                    format!(
                        "needs exactly one field with role {}, found {n}",
                        role.name()
                    ),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &file.fields {
            if !seen.insert(f.name.as_str()) {
                return Err(Error::config(
                    &path,
                    format!("fields.{}", f.name),
                    "duplicate field name",
                ));
            }
            let fits = declared_types(f.role);
            if !fits.contains(&f.ty) {
                let names: Vec<&str> = fits.iter().map(|t| t.name()).collect();
                return Err(Error::config(
                    &path,
                    format!("fields.{}", f.name),
                    format!(
                        "type {} does not fit role {} in a {stream} schema: a {} field is \
                         declared as {} (and reads {})",
                        f.ty.name(),
                        f.role.name(),
                        f.role.name(),
                        names.join(" or "),
                        crate::decode::accepted(f.role),
                    ),
                ));
            }
            let allowed = match stream {
                Stream::Events => matches!(
                    f.role,
                    Role::Id | Role::Entity | Role::Time | Role::Numeric | Role::Categorical
                ),
                Stream::Predictions => {
                    matches!(f.role, Role::Id | Role::Model | Role::Score | Role::Time)
                }
                Stream::Labels => matches!(f.role, Role::Id | Role::Label | Role::Time),
            };
            if !allowed {
                return Err(Error::config(
                    &path,
                    format!("fields.{}", f.name),
                    format!("role {} is not allowed in a {stream} schema", f.role.name()),
                ));
            }
            if f.nullable && !matches!(f.role, Role::Numeric | Role::Categorical) {
                return Err(Error::config(
                    &path,
                    format!("fields.{}", f.name),
                    "only features may be nullable",
                ));
            }
        }
        let names = |role: Role| {
            file.fields
                .iter()
                .filter(|f| f.role == role)
                .map(|f| f.name.clone())
                .collect()
        };
        Ok(InputSchema {
            id: file.id.clone(),
            stream,
            numeric: names(Role::Numeric),
            categorical: names(Role::Categorical),
            fields: file.fields,
            extra_fields: ExtraFields::Ignore,
        })
    }

    /// The field that carries `role` (the first one, for feature roles).
    pub fn field(&self, role: Role) -> &FieldSpec {
        self.fields
            .iter()
            .find(|f| f.role == role)
            .expect("role checked at load")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type that does not fit a role is refused naming the type, the role, the types it may be
    /// declared as and what it reads, in schema-file words (not Rust's).
    #[test]
    fn a_misfit_type_names_what_would_fit() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let schema = r#"{"id":"events.x","stream":"events","fields":[
            {"name":"event_id","type":"float64","role":"id"},
            {"name":"entity","type":"string","role":"entity"},
            {"name":"event_time","type":"timestamp_ms","role":"time"}]}"#;
        std::fs::write(dir.path().join("events.x.json"), schema).expect("written");
        let e = InputSchema::load(dir.path(), "events.x", Stream::Events)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("fields.event_id"), "{e}");
        assert!(
            e.contains("type float64 does not fit role id")
                && e.contains("string or int64 or uint64")
                && e.contains("integer of any width"),
            "{e}"
        );
        for ty in ["uint64", "int64", "string"] {
            let ok = schema.replace(r#""type":"float64""#, &format!(r#""type":"{ty}""#));
            std::fs::write(dir.path().join("events.x.json"), ok).expect("written");
            InputSchema::load(dir.path(), "events.x", Stream::Events).expect(ty);
        }
    }
}
