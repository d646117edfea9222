//! Schema-driven decoding of raw values (JSON objects, Arrow rows) into typed records.

use std::sync::Arc;

use crate::records::{to_micro, Event, Label, Prediction, Record, Text};
use crate::schema::{ExtraFields, FieldSpec, FieldType, InputSchema, Role, Stream};

/// Earliest accepted record time: 2000-01-01T00:00:00Z.
pub const MIN_TIME_MS: i64 = 946_684_800_000;
/// Latest accepted record time: 2100-01-01T00:00:00Z.
pub const MAX_TIME_MS: i64 = 4_102_444_800_000;

/// One raw field value, borrowed from its container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Absent or null.
    Null,
    /// A string.
    Str(&'a str),
    /// A float.
    F64(f64),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A boolean.
    Bool(bool),
    /// A JSON value of another kind (an object, an array), named.
    Other(&'static str),
    /// A cell of an Arrow column whose type no role reads.
    Column(&'a arrow_schema::DataType),
}

impl Value<'_> {
    fn kind(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Str(_) => "a string".into(),
            Value::F64(_) => "a float".into(),
            Value::I64(_) | Value::U64(_) => "an integer".into(),
            Value::Bool(_) => "a boolean".into(),
            Value::Other(k) => (*k).into(),
            Value::Column(t) => format!("a column of Arrow type {t}"),
        }
    }
}

/// What a field of `role` accepts, in words, for error messages.
pub fn accepted(role: Role) -> &'static str {
    match role {
        Role::Id | Role::Entity | Role::Model | Role::Categorical => {
            "a string (Arrow utf8, large_utf8, utf8_view or a dictionary of strings) or an \
             integer of any width"
        }
        Role::Time => {
            "epoch milliseconds as an integer, an Arrow timestamp of any unit and time zone, a \
             date, or an RFC 3339 / ISO-8601 string"
        }
        Role::Numeric | Role::Score => "an integer or float of any width, or a decimal",
        Role::Label => "0 or 1 as an integer of any width or a float, or a boolean",
        Role::Output => "nothing (output fields are not read)",
    }
}

/// Why a field could not be decoded: the field name and the reason.
pub type FieldError = (String, String);

fn fail(f: &FieldSpec, reason: impl Into<String>) -> FieldError {
    (f.name.clone(), reason.into())
}

/// A value of the wrong kind: names what was found and what the field's role takes.
fn wrong(f: &FieldSpec, v: Value<'_>) -> FieldError {
    let found = match v {
        Value::Str(s) => format!("the string {}", quoted(s)),
        Value::F64(x) => format!("the float {x}"),
        Value::I64(x) => format!("the integer {x}"),
        Value::U64(x) => format!("the integer {x}"),
        Value::Bool(b) => format!("the boolean {b}"),
        v => v.kind(),
    };
    fail(f, format!("expected {}, found {found}", accepted(f.role)))
}

/// A text value (id, entity, model, category): a non-empty string, or an integer as its
/// decimal digits (a field declared `uint64` refuses negative integers).
fn text(f: &FieldSpec, v: Value<'_>) -> Result<Text, FieldError> {
    let integer = matches!(f.ty, FieldType::Int64 | FieldType::Uint64);
    match v {
        // A field declared an integer takes integers as strings only in their one spelling:
        // "007" and "7" would be two ids that print as one.
        Value::Str(s) if integer => match s.parse::<i128>() {
            Ok(x) if x.to_string() == s && (x >= 0 || f.ty == FieldType::Int64) => {
                Ok(Text::from(s))
            }
            _ => Err(fail(
                f,
                format!(
                    "expected an integer (the schema declares {}), found the string {}",
                    f.ty.name(),
                    quoted(s)
                ),
            )),
        },
        Value::Str(s) if !s.is_empty() => Ok(Text::from(s)),
        Value::Str(_) => Err(fail(f, "empty string")),
        Value::I64(x) if x < 0 && f.ty == FieldType::Uint64 => Err(fail(
            f,
            format!("negative integer {x} does not fit the declared type uint64"),
        )),
        Value::I64(x) => Ok(Text::from(itoa::Buffer::new().format(x))),
        Value::U64(x) => Ok(Text::from(itoa::Buffer::new().format(x))),
        Value::Null => Err(fail(f, "missing")),
        other => Err(wrong(f, other)),
    }
}

/// A string value quoted for a reason, cut to an excerpt: a reason is a line, not a copy of
/// the record (`raw` carries that).
fn quoted(s: &str) -> String {
    crate::records::excerpt(&format!("{s:?}"))
}

fn number(f: &FieldSpec, v: Value<'_>) -> Result<f64, FieldError> {
    let x = match v {
        Value::F64(x) => x,
        Value::I64(x) => x as f64,
        Value::U64(x) => x as f64,
        Value::Str("NaN" | "nan" | "Infinity" | "-Infinity" | "inf" | "-inf") => f64::NAN,
        Value::Null => return Err(fail(f, "missing")),
        other => return Err(wrong(f, other)),
    };
    if !x.is_finite() {
        return Err(fail(f, "NaN or infinite value is not allowed"));
    }
    Ok(x)
}

fn time(f: &FieldSpec, v: Value<'_>) -> Result<u64, FieldError> {
    // Out of i64's range stands in as i64::MAX, which is absurd; the message shows `v` as given.
    let t = match v {
        Value::I64(x) => x,
        Value::U64(x) => i64::try_from(x).unwrap_or(i64::MAX),
        Value::F64(x) if x.fract() == 0.0 && x.is_finite() && x.abs() < 9.0e18 => x as i64,
        Value::F64(x) if x.fract() == 0.0 && x.is_finite() => i64::MAX,
        // A time without an offset is UTC; a fraction finer than a millisecond is cut off.
        Value::Str(s) => match arrow_cast::parse::string_to_timestamp_nanos(s.trim()) {
            Ok(ns) => ns.div_euclid(1_000_000),
            Err(_) => {
                let why = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    "epoch milliseconds are a number, not a string"
                } else {
                    "which is no RFC 3339 / ISO-8601 time"
                };
                return Err(fail(
                    f,
                    format!(
                        "expected {}, found the string {}: {why}",
                        accepted(f.role),
                        quoted(s)
                    ),
                ));
            }
        },
        Value::Null => return Err(fail(f, "missing")),
        other => return Err(wrong(f, other)),
    };
    if t < 0 {
        return Err(fail(f, format!("negative time {t}")));
    }
    if !(MIN_TIME_MS..MAX_TIME_MS).contains(&t) {
        return Err(fail(
            f,
            format!("absurd time {} (outside years 2000..2100)", describe(v)),
        ));
    }
    Ok(t as u64)
}

/// Decodes one record of `schema`'s stream, reading fields through `get`.
pub fn decode<'a>(
    schema: &InputSchema,
    mut get: impl FnMut(&str) -> Value<'a>,
) -> Result<Record, FieldError> {
    match schema.stream {
        Stream::Events => {
            let mut id = None;
            let mut entity = None;
            let mut t = None;
            let mut numeric = crate::records::Numbers::with_capacity(schema.numeric.len());
            let mut categorical =
                crate::records::Categories::with_capacity(schema.categorical.len());
            for f in &schema.fields {
                let v = get(&f.name);
                match f.role {
                    Role::Id => id = Some(text(f, v)?),
                    Role::Entity => entity = Some(text(f, v)?),
                    Role::Time => t = Some(time(f, v)?),
                    Role::Numeric => numeric.push(match v {
                        Value::Null if f.nullable => None,
                        v => {
                            let x = number(f, v)?;
                            if matches!(f.ty, FieldType::Int64 | FieldType::Uint64)
                                && x.fract() != 0.0
                            {
                                return Err(fail(f, format!("expected an integer, found {x}")));
                            }
                            if f.ty == FieldType::Uint64 && x < 0.0 {
                                return Err(fail(
                                    f,
                                    format!("negative {x} does not fit the declared type uint64"),
                                ));
                            }
                            // Keeps squares of micro-units and their window sums within i128.
                            if x.abs() > 1.0e9 {
                                return Err(fail(f, format!("value {x} is outside ±1e9")));
                            }
                            Some(to_micro(x))
                        }
                    }),
                    Role::Categorical => categorical.push(match v {
                        Value::Null if f.nullable => None,
                        v => Some(text(f, v)?),
                    }),
                    _ => unreachable!("schema roles checked at load"),
                }
            }
            Ok(Record::Event(Arc::new(Event {
                id: id.expect("id role"),
                entity: entity.expect("entity role"),
                time: t.expect("time role"),
                numeric,
                categorical,
                segments: Default::default(),
            })))
        }
        Stream::Predictions => {
            let f = schema.field(Role::Id);
            let event_id = text(f, get(&f.name))?;
            let f = schema.field(Role::Model);
            let model = text(f, get(&f.name))?;
            let f = schema.field(Role::Score);
            let s = number(f, get(&f.name))?;
            if !(0.0..=1.0).contains(&s) {
                return Err(fail(f, format!("score {s} is outside [0, 1]")));
            }
            let f = schema.field(Role::Time);
            let t = time(f, get(&f.name))?;
            Ok(Record::Prediction(Arc::new(Prediction {
                event_id,
                model,
                score: to_micro(s),
                time: t,
            })))
        }
        Stream::Labels => {
            let f = schema.field(Role::Id);
            let event_id = text(f, get(&f.name))?;
            let f = schema.field(Role::Label);
            let label = match get(&f.name) {
                Value::Bool(b) => b as u8,
                Value::I64(0) | Value::U64(0) => 0,
                Value::I64(1) | Value::U64(1) => 1,
                Value::F64(x) if x == 0.0 || x == 1.0 => x as u8,
                Value::Null => return Err(fail(f, "missing")),
                // Strings are refused whatever they say ("1", "yes", "true" would each need a
                // rule of their own).
                other => return Err(wrong(f, other)),
            };
            let f = schema.field(Role::Time);
            let t = time(f, get(&f.name))?;
            Ok(Record::Label(Label {
                event_id,
                label,
                time: t,
            }))
        }
    }
}

fn describe(v: Value<'_>) -> String {
    match v {
        Value::F64(x) => format!("{x}"),
        Value::I64(x) => format!("{x}"),
        Value::U64(x) => format!("{x}"),
        Value::Str(s) => format!("the string {s:?}"),
        other => other.kind().to_string(),
    }
}

/// The reason given to a record with a field its schema does not declare, when the source
/// dead-letters such records.
pub fn unknown_field(schema: &InputSchema) -> String {
    format!(
        "unknown field (schema {} does not declare it, and the source's extra_fields is \
         \"dead_letter\")",
        schema.id
    )
}

/// Decodes one JSON Lines line; the error's field is empty when the line is not a JSON object.
pub fn decode_json_line(schema: &InputSchema, line: &str) -> Result<Record, FieldError> {
    decode_json_bytes(schema, line.as_bytes())
}

/// Decodes one JSON object from raw bytes. A value that cannot be read (a number out of range,
/// invalid UTF-8 in a string) names the field it belongs to; a key given twice is refused; a
/// key the schema does not declare is ignored or refused as the source's `extra_fields` says.
pub fn decode_json_bytes(schema: &InputSchema, line: &[u8]) -> Result<Record, FieldError> {
    use serde::de::DeserializeSeed;
    let mut reading = None;
    let mut de = serde_json::Deserializer::from_slice(line);
    let parsed = Fields {
        reading: &mut reading,
    }
    .deserialize(&mut de)
    .and_then(|f| de.end().map(|()| f));
    let obj = match parsed {
        Ok(Some(pairs)) => pairs,
        Ok(None) => return Err((String::new(), "not a JSON object".to_string())),
        Err(e) => {
            let what = if e.to_string().contains("unicode") || std::str::from_utf8(line).is_err() {
                "invalid UTF-8 or escape"
            } else {
                "invalid JSON"
            };
            // A line cut short is the record's fault, not the field's it stopped in.
            let field = if e.is_eof() { None } else { reading };
            return Err((field.unwrap_or_default(), format!("{what}: {e}")));
        }
    };
    for (i, (key, _)) in obj.iter().enumerate() {
        if obj[..i].iter().any(|(k, _)| k == key) {
            return Err((
                key.clone(),
                "duplicate field: the key appears more than once in the object".into(),
            ));
        }
        if schema.extra_fields == ExtraFields::DeadLetter
            && !schema.fields.iter().any(|f| &f.name == key)
        {
            return Err((key.clone(), unknown_field(schema)));
        }
    }
    let get = |name: &str| obj.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    decode(schema, |name| match get(name) {
        None | Some(serde_json::Value::Null) => Value::Null,
        Some(serde_json::Value::String(s)) => Value::Str(s),
        Some(serde_json::Value::Bool(b)) => Value::Bool(*b),
        Some(serde_json::Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Value::I64(i)
            } else if let Some(u) = n.as_u64() {
                Value::U64(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Some(serde_json::Value::Array(_)) => Value::Other("an array"),
        Some(serde_json::Value::Object(_)) => Value::Other("an object"),
    })
}

/// A JSON object read as its key-value pairs in order (duplicates kept, to be refused), or
/// `None` for any other JSON value; `reading` names the key whose value is being read, so an
/// error inside it can name the field.
struct Fields<'r> {
    reading: &'r mut Option<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Fields<'_> {
    type Value = Option<Vec<(String, serde_json::Value)>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Fields<'_> {
    type Value = Option<Vec<(String, serde_json::Value)>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            // An error in a key (or between pairs) is the record's, not the previous field's.
            *self.reading = None;
            let Some(key) = map.next_key::<String>()? else {
                break;
            };
            *self.reading = Some(key.clone());
            let v = map.next_value::<serde_json::Value>()?;
            out.push((key, v));
        }
        *self.reading = None;
        Ok(Some(out))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    fn events() -> InputSchema {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        InputSchema::load(&dir, "events.v1", Stream::Events).unwrap()
    }

    #[test]
    fn an_unreadable_value_names_its_field() {
        let s = events();
        let mut line =
            br#"{"event_id":"a","entity":"b","event_time":1767225600000,"country":""#.to_vec();
        line.extend_from_slice(&[0xff, 0xfe]);
        line.extend_from_slice(br#""}"#);
        let (field, reason) = decode_json_bytes(&s, &line).unwrap_err();
        assert_eq!(field, "country", "{reason}");
        assert!(reason.contains("invalid UTF-8"), "{reason}");
        let (field, reason) = decode_json_line(
            &s,
            r#"{"event_id":"a","amount":1e400,"entity":"b","event_time":1767225600000}"#,
        )
        .unwrap_err();
        assert_eq!(field, "amount", "{reason}");
        let (field, _) = decode_json_line(&s, r#"{"event_id":"a","entity":"#).unwrap_err();
        assert_eq!(field, "", "a truncated line is the record's fault");
    }

    #[test]
    fn labels_are_integers_floats_or_booleans_never_strings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let s = InputSchema::load(&dir, "labels.v1", Stream::Labels).unwrap();
        let line =
            |v: &str| format!(r#"{{"event_id":"a","label":{v},"label_time":1767225600000}}"#);
        for (v, want) in [("1", 1), ("0", 0), ("1.0", 1), ("true", 1), ("false", 0)] {
            match decode_json_line(&s, &line(v)) {
                Ok(Record::Label(l)) => assert_eq!(l.label, want, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        for v in [r#""1""#, r#""true""#, "2", "0.5"] {
            let (field, reason) = decode_json_line(&s, &line(v)).unwrap_err();
            assert_eq!(field, "label");
            assert!(reason.contains("expected 0 or 1"), "{reason}");
        }
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let (field, reason) = decode_json_line(
            &events(),
            r#"{"event_id":"a","entity":"b","entity":"c","event_time":1767225600000}"#,
        )
        .unwrap_err();
        assert_eq!(field, "entity");
        assert!(reason.contains("duplicate field"), "{reason}");
    }
}
