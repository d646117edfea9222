//! Rows that carry a window status: provisional, then final, then a retirement tombstone.

/// A row that carries a window status.
pub trait StatusRow {
    /// The same row marked retired.
    fn retired(&self) -> Self;
}
