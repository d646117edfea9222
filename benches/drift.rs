//! Cost of the drift statistics: the KS p-value (`kstwo`) in each method's most expensive corner,
//! and the exact KS / Wasserstein of a final window against a reference.
//!
//! `cargo bench --bench drift`; figures go to BENCHMARKS.md.

use std::hint::black_box;
use std::time::Instant;

use tidemark::drift::kolmogorov::kstwo_sf;
use tidemark::drift::stats::{ks_numerator, wasserstein_numerator};

/// Best per-call time (seconds) of `f` over several batches, so a busy machine does not
/// inflate the figure.
fn best_of(batch: usize, mut f: impl FnMut()) -> f64 {
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_secs_f64() / batch as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    println!("kstwo_sf, one call:");
    let cases: &[(&str, f64, u64)] = &[
        ("Pomeranz, n = 140", 0.169, 140),
        ("Durbin matrix, n = 10^4", 0.00269, 10_000),
        ("Pelz-Good, n = 10^6", 0.001, 1_000_000),
        ("Birnbaum-Tingey sum, n = 1999", 0.034, 1_999),
        ("Birnbaum-Tingey integral, n = 10^6", 0.0015, 1_000_000),
        ("2*smirnov, d >= 0.5, n = 1400", 0.5, 1_400),
    ];
    for &(name, d, n) in cases {
        let t = best_of(20, || {
            black_box(kstwo_sf(black_box(d), n));
        });
        println!("  {name:<38} {:>10.1} µs", t * 1e6);
    }
    println!("exact KS + Wasserstein of a window against a reference (distinct values):");
    for (window, reference) in [
        (1_000usize, 10_000usize),
        (10_000, 100_000),
        (100_000, 100_000),
    ] {
        let w: Vec<(i64, u64)> = (0..window as i64).map(|i| (i * 7, 1)).collect();
        let r: Vec<(i64, u64)> = (0..reference as i64).map(|i| (i * 5 + 3, 2)).collect();
        let t = best_of(5, || {
            black_box(ks_numerator(&w, &r));
            black_box(wasserstein_numerator(&w, &r));
        });
        println!(
            "  window {window:>7}, reference {reference:>7}: {:>10.1} µs ({:.1} ns per merged value)",
            t * 1e6,
            t * 1e9 / (window + reference) as f64
        );
    }
}
