//! Window status of a keyed aggregate: provisional, then final, then a retirement tombstone.

use differential_dataflow::{Data, VecCollection};

use super::temporal::{delay_to, expire_at, retirements};
use super::windows::{Status, Win, Windows};

/// Turns `(key, value)` aggregates of windows into status-marked rows built by `row`.
pub fn with_status<'s, K, V, Row>(
    name: &str,
    windows: &Windows,
    aggs: VecCollection<'s, u64, (K, V)>,
    win: fn(&K) -> Win,
    row: fn(K, Status, V) -> Row,
    row_win: fn(&Row) -> Win,
) -> VecCollection<'s, u64, Row>
where
    K: Data,
    V: Data,
    Row: differential_dataflow::ExchangeData + differential_dataflow::Hashable + StatusRow,
{
    let w = windows.clone();
    let provisional = expire_at(
        aggs.clone(),
        &format!("{name}Provisional"),
        move |(k, _)| w.final_at(&win(k)),
    )
    .map(move |(k, v)| row(k, Status::Provisional, v));
    let w = windows.clone();
    let final_rows = delay_to(aggs, &format!("{name}Final"), move |(k, _)| {
        w.final_at(&win(k))
    })
    .map(move |(k, v)| row(k, Status::Final, v));
    let w = windows.clone();
    let retired = retirements(
        final_rows.clone(),
        &format!("{name}Retired"),
        move |r| w.retire_at(&row_win(r)),
        |r: &Row| r.retired(),
    );
    provisional.concat(final_rows).concat(retired)
}

/// A row that carries a window status.
pub trait StatusRow {
    /// The same row marked retired.
    fn retired(&self) -> Self;
}
