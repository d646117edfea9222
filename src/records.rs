//! Typed input records and the fixed-point numbers they carry.
//!
//! Differential data must be `Ord` and sums must not depend on the order of addition, so every
//! number inside the dataflow is a fixed-point integer; floats appear only when a final statistic
//! is formatted for output.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A string kept inline up to 24 bytes (ids, entities, category values and model names nearly
/// always are): no allocation of its own, and no pointer to chase when compared or hashed.
pub type Text = compact_str::CompactString;

/// An event's numeric features: inline up to four (most schemas), so that an event is one
/// allocation, not three (allocation was a third of ingest's time).
pub type Numbers = smallvec::SmallVec<[Option<i64>; 4]>;

/// An event's categorical features: inline up to two.
pub type Categories = smallvec::SmallVec<[Option<Text>; 2]>;

/// Fixed-point scale of feature values and scores: micro-units.
pub const MICRO: i64 = 1_000_000;

/// Converts a finite float into micro-units, rounding half away from zero.
pub fn to_micro(x: f64) -> i64 {
    (x * MICRO as f64).round() as i64
}

/// Converts micro-units back into a float.
pub fn from_micro(x: i64) -> f64 {
    x as f64 / MICRO as f64
}

/// Position of a record in its source: file and line (or row), or generator sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// File path, or `generator:<stream>` (shared by every record of a source, not copied).
    pub source: std::sync::Arc<str>,
    /// 1-based line (JSON Lines), 0-based row (Parquet) or sequence number (generator).
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.offset)
    }
}

/// Where a record entered the job: its timestamp as stamped, then where it was read. Records of
/// one id are decided in this order (the first is accepted, a later one is a duplicate), so the
/// decision depends on the input alone, not on which worker delivers a record first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The timestamp the record was stamped with (before rounding to an emit boundary).
    pub stamp: u64,
    /// Where it was read.
    pub position: Position,
}

/// A feature record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Unique event id.
    pub id: Text,
    /// The entity the event belongs to.
    pub entity: Text,
    /// Event time, epoch milliseconds.
    pub time: u64,
    /// Numeric features in schema order, micro-units; `None` is null.
    pub numeric: Numbers,
    /// Categorical features in schema order; `None` is null.
    pub categorical: Categories,
    /// The event's segment names, computed by the first aggregation that reads them (an event
    /// is read by the operators of one job, whose segment columns they all share).
    #[serde(skip)]
    pub segments: Memo<smallvec::SmallVec<[Arc<str>; 2]>>,
}

/// A value derived from a record's own fields, computed once when first needed and shared by
/// every reader of the record. It is no part of the record's value: it never compares, orders,
/// hashes or serializes (a deserialized record computes it again).
#[derive(Debug, Clone)]
pub struct Memo<T>(std::sync::OnceLock<T>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo(std::sync::OnceLock::new())
    }
}

impl<T> Memo<T> {
    /// The value, computed by `f` if it is the first reader.
    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(f)
    }
}

impl<T> PartialEq for Memo<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Memo<T> {}

impl<T> PartialOrd for Memo<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Memo<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> std::hash::Hash for Memo<T> {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// A production prediction for an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Prediction {
    /// The event it scores.
    pub event_id: Text,
    /// Model version that produced it.
    pub model: Text,
    /// Score in micro-units, within [0, 1_000_000].
    pub score: i64,
    /// Prediction time, epoch milliseconds.
    pub time: u64,
}

/// A ground-truth label for an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    /// The event it labels.
    pub event_id: Text,
    /// 0 or 1.
    pub label: u8,
    /// Label time, epoch milliseconds.
    pub time: u64,
}

/// A decoded input record of any stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Record {
    /// From the events stream (shared: the join keeps it, and the replay buffer records it).
    Event(Arc<Event>),
    /// From the predictions stream (shared likewise).
    Prediction(Arc<Prediction>),
    /// From the labels stream.
    Label(Label),
}

impl Record {
    /// The record's own time (event, prediction or label time).
    pub fn time(&self) -> u64 {
        match self {
            Record::Event(e) => e.time,
            Record::Prediction(p) => p.time,
            Record::Label(l) => l.time,
        }
    }
}

/// A record that could not be accepted, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Stream name.
    pub stream: String,
    /// Where the record was read.
    pub position: Position,
    /// The offending field, or empty when the whole record is unreadable.
    pub field: String,
    /// Why it was refused.
    pub reason: String,
    /// The record's text (truncated to 200 bytes), for forensics.
    pub raw: String,
}

/// Truncates a raw record for a dead letter, on a char boundary.
pub fn excerpt(raw: &str) -> String {
    const MAX: usize = 200;
    if raw.len() <= MAX {
        return raw.to_string();
    }
    let mut end = MAX;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

/// A dead letter's reason as one of a fixed set of classes, for metric labels of bounded
/// cardinality (the reason itself names values).
pub fn reason_class(reason: &str) -> &'static str {
    const CLASSES: [(&str, &str); 17] = [
        ("already accepted", "duplicate"),
        ("max_lateness", "too_late"),
        ("cannot read this source", "unreadable_source"),
        ("duplicate field", "duplicate_field"),
        ("blank line", "blank_line"),
        ("max_jump", "time_jump"),
        ("invalid JSON", "invalid_json"),
        ("invalid UTF-8", "invalid_utf8"),
        ("unreadable Parquet", "unreadable_parquet"),
        ("unknown field", "unknown_field"),
        ("tombstone", "tombstone"),
        ("missing", "missing"),
        ("empty string", "empty"),
        ("NaN or infinite", "not_finite"),
        ("expected", "wrong_type"),
        ("outside", "out_of_range"),
        ("time", "bad_time"),
    ];
    CLASSES
        .iter()
        .find(|(needle, _)| reason.contains(needle))
        .map_or("other", |(_, class)| class)
}

#[cfg(test)]
mod reason_tests {
    use super::reason_class;

    #[test]
    fn reasons_fall_into_fixed_classes() {
        assert_eq!(
            reason_class("expected a number, found string"),
            "wrong_type"
        );
        assert_eq!(reason_class("score 1.5 is outside [0, 1]"), "out_of_range");
        assert_eq!(
            reason_class(
                "time 9 is 5 ms ahead of the partition watermark 4, past max_jump_ms 3; …"
            ),
            "time_jump"
        );
        assert_eq!(reason_class("negative time -3"), "bad_time");
        assert_eq!(reason_class("invalid JSON: EOF"), "invalid_json");
        assert_eq!(reason_class("missing"), "missing");
        assert_eq!(
            reason_class(
                "duplicate event id \"e1\": already accepted from a.jsonl:3 (timestamp 5); …"
            ),
            "duplicate"
        );
        assert_eq!(reason_class("something new"), "other");
    }
}
