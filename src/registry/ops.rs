//! What `tidemark models` does: list, show and compare versions, and the operator's changes
//! (promote, rollback, pause, resume) made while no job runs: each is recorded in the
//! registry's history and queued for the job's learner, which takes it up at its next start
//! (so that its next decision continues from the operator's, not from before it).

use std::fmt::Write;

use super::{HistoryEntry, Registry, VersionFile};
use crate::error::{Error, Result};

/// The table of versions with their aliases.
pub fn list(reg: &Registry) -> Result<String> {
    let file = reg.read()?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<9} {:>9} {:>16} {:>9} {:>9}  alias",
        "version", "parent", "examples", "trained_through", "log_loss", "accuracy"
    );
    for v in reg.versions()? {
        let f = reg.version(&v)?;
        let alias = if file.champion.as_deref() == Some(&v) {
            "champion"
        } else if file.challenger.as_deref() == Some(&v) {
            "challenger"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:<9} {:<9} {:>9} {:>16} {:>9} {:>9}  {alias}",
            f.version,
            f.parent.as_deref().unwrap_or("-"),
            f.examples,
            f.trained_through_ts,
            fmt_opt(f.metrics.log_loss),
            fmt_opt(f.metrics.accuracy),
        );
    }
    let _ = writeln!(
        out,
        "updates: {}",
        if file.paused {
            "paused (tidemark models resume)"
        } else {
            "running"
        }
    );
    let waiting = crate::control::waiting_commands(reg.dir())?;
    if let (Some(first), Some(last)) = (waiting.first(), waiting.last()) {
        let _ = writeln!(
            out,
            "commands waiting for a job: {} (numbers {first}..={last}, in {})",
            waiting.len(),
            crate::control::dir(reg.dir()).display()
        );
    }
    Ok(out)
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.4}"))
}

/// Names of a model's weights, in weight order.
fn weight_names(f: &VersionFile) -> Vec<String> {
    let feats = &f.model.features;
    let mut names: Vec<String> = feats.numeric.iter().map(|(n, _)| n.clone()).collect();
    names.extend((0..(1usize << feats.hash_bits)).map(|b| format!("hash[{b}]")));
    names
}

/// One version in detail.
pub fn show(reg: &Registry, version: &str) -> Result<String> {
    let f = reg.version(version)?;
    let m = &f.model;
    let mut out = String::new();
    let _ = writeln!(out, "version            {}", f.version);
    let _ = writeln!(
        out,
        "parent             {}",
        f.parent.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "job                {}", f.job);
    let _ = writeln!(out, "loss               {:?}", m.loss);
    let _ = writeln!(out, "examples           {}", f.examples);
    let _ = writeln!(
        out,
        "trained ts         {} ..= {}",
        f.trained_from_ts, f.trained_through_ts
    );
    let _ = writeln!(
        out,
        "window metrics     {} examples, log-loss {}, accuracy {}",
        f.metrics.window_examples,
        fmt_opt(f.metrics.log_loss),
        fmt_opt(f.metrics.accuracy)
    );
    let _ = writeln!(
        out,
        "lineage            replay [{}, {}) of a buffer with job fingerprint {}",
        f.lineage.from_ts, f.lineage.to_ts, f.lineage.job_fingerprint
    );
    let _ = writeln!(out, "checksum           {}", f.checksum);
    let _ = writeln!(out, "weight norm        {:.6}", m.norm());
    let _ = writeln!(out, "bias               {:.6}", m.bias);
    let names = weight_names(&f);
    let cats: Vec<&str> = m
        .features
        .categorical
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let _ = writeln!(
        out,
        "features           numeric {:?}; categorical {:?} hashed into {} buckets",
        m.features
            .numeric
            .iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>(),
        cats,
        1usize << m.features.hash_bits
    );
    let mut top: Vec<(usize, f64)> = m.weights.iter().copied().enumerate().collect();
    top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    let _ = writeln!(out, "largest weights:");
    for (i, w) in top.into_iter().take(10).filter(|(_, w)| *w != 0.0) {
        let _ = writeln!(out, "  {:<16} {w:+.6}", names[i]);
    }
    Ok(out)
}

/// How two versions differ.
pub fn diff(reg: &Registry, a: &str, b: &str) -> Result<String> {
    let (fa, fb) = (reg.version(a)?, reg.version(b)?);
    if fa.model.features != fb.model.features {
        return Err(Error::registry(
            reg.version_path(b),
            format!("{b} reads other features than {a}: their weights do not compare"),
        ));
    }
    let names = weight_names(&fa);
    let mut deltas: Vec<(usize, f64)> = fa
        .model
        .weights
        .iter()
        .zip(&fb.model.weights)
        .map(|(x, y)| y - x)
        .enumerate()
        .collect();
    let dist = (deltas.iter().map(|(_, d)| d * d).sum::<f64>()
        + (fb.model.bias - fa.model.bias).powi(2))
    .sqrt();
    deltas.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()).then(x.0.cmp(&y.0)));
    let mut out = String::new();
    let _ = writeln!(out, "{a} -> {b}");
    let _ = writeln!(
        out,
        "examples           {} -> {} (+{})",
        fa.examples,
        fb.examples,
        fb.examples as i64 - fa.examples as i64
    );
    let _ = writeln!(
        out,
        "window log-loss    {} -> {}",
        fmt_opt(fa.metrics.log_loss),
        fmt_opt(fb.metrics.log_loss)
    );
    let _ = writeln!(
        out,
        "window accuracy    {} -> {}",
        fmt_opt(fa.metrics.accuracy),
        fmt_opt(fb.metrics.accuracy)
    );
    let _ = writeln!(out, "parameter distance {dist:.6} (L2)");
    let _ = writeln!(
        out,
        "bias               {:+.6}",
        fb.model.bias - fa.model.bias
    );
    let _ = writeln!(out, "largest weight changes:");
    for (i, d) in deltas.into_iter().take(10).filter(|(_, d)| *d != 0.0) {
        let _ = writeln!(
            out,
            "  {:<16} {:+.6} -> {:+.6} ({d:+.6})",
            names[i], fa.model.weights[i], fb.model.weights[i]
        );
    }
    Ok(out)
}

/// Writes an operator's change: queued first for the learner of the next job to hold the
/// registry (which brings its state in line), then recorded under that command's number; a
/// change that cannot be written is taken back from the queue.
fn change(
    reg: &Registry,
    mut file: super::RegistryFile,
    command: crate::control::Command,
    version: Option<String>,
    (concerned, reason): (Option<String>, &str),
) -> Result<()> {
    let seq = crate::control::submit(
        reg.dir(),
        crate::control::Control {
            seq: 0,
            command,
            version,
            reason: reason.into(),
            offline: true,
            model: None,
        },
    )?;
    file.history.push(HistoryEntry {
        seq: None,
        ts: None,
        action: command.name().into(),
        version: concerned,
        champion: file.champion.clone(),
        reason: reason.into(),
        by: "operator".into(),
        command: Some(seq),
    });
    reg.write(&file).inspect_err(|_| {
        let _ = crate::control::withdraw(reg.dir(), seq);
    })
}

/// Makes `version` the champion.
pub fn promote(reg: &Registry, version: &str, reason: &str) -> Result<()> {
    reg.version(version)?;
    let mut file = reg.read()?;
    file.champion = Some(version.to_string());
    if file.challenger.as_deref() == Some(version) {
        file.challenger = None;
    }
    change(
        reg,
        file,
        crate::control::Command::Promote,
        Some(version.into()),
        (Some(version.into()), reason),
    )
}

/// Restores the champion before the current one and pauses updates (as the job's own
/// rollback does: what the learner learned since may be what went wrong); returns it.
pub fn rollback(reg: &Registry, reason: &str) -> Result<String> {
    let mut file = reg.read()?;
    let current = file.champion.clone();
    // The champions in force, as a stack: a promotion pushes, a rollback pops.
    let mut stack: Vec<String> = Vec::new();
    for h in &file.history {
        match (h.action.as_str(), &h.version) {
            ("promote", Some(v)) => stack.push(v.clone()),
            ("rollback", _) => {
                stack.pop();
            }
            _ => {}
        }
    }
    let previous = stack
        .len()
        .checked_sub(2)
        .map(|i| stack[i].clone())
        .ok_or_else(|| {
            Error::registry(
                reg.dir().join(super::REGISTRY),
                "no earlier champion in the history to roll back to",
            )
        })?;
    reg.version(&previous)?;
    file.champion = Some(previous.clone());
    file.paused = true;
    change(
        reg,
        file,
        crate::control::Command::Rollback,
        Some(previous.clone()),
        (current, reason),
    )?;
    Ok(previous)
}

/// Lets a paused job learn again; returns whether it was paused.
pub fn resume(reg: &Registry, reason: &str) -> Result<bool> {
    set_paused(reg, false, reason)
}

/// Stops a job's learning (the champion keeps serving); returns whether it was running.
pub fn pause(reg: &Registry, reason: &str) -> Result<bool> {
    set_paused(reg, true, reason)
}

fn set_paused(reg: &Registry, paused: bool, reason: &str) -> Result<bool> {
    let mut file = reg.read()?;
    if file.paused == paused {
        return Ok(false);
    }
    file.paused = paused;
    let command = if paused {
        crate::control::Command::Pause
    } else {
        crate::control::Command::Resume
    };
    change(reg, file, command, None, (None, reason))?;
    Ok(true)
}
