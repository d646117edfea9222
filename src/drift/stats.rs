//! Two-sample drift statistics over exact integer inputs, as the reference implementations
//! define them: KS (scipy `ks_2samp`), Wasserstein-1 (`scipy.stats.wasserstein_distance`),
//! Jensen–Shannon distance (`scipy.spatial.distance.jensenshannon`), chi-square homogeneity
//! (`scipy.stats.chi2_contingency(correction=False)`) and the textbook PSI.
//!
//! Samples are sorted multisets of fixed-point values: ascending distinct values with their
//! counts. Differences of empirical CDFs are taken in integers and divided once, so the results
//! do not depend on summation order.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::kolmogorov::ks_2samp_asymp_pvalue;
use crate::records::MICRO;

/// Proportions below this are raised to it before PSI takes their logarithm.
pub const PSI_FLOOR: f64 = 0.001;

/// Total count of a sorted multiset.
fn total(a: &[(i64, u64)]) -> u64 {
    a.iter().map(|(_, c)| c).sum()
}

/// Walks the merged distinct values of `a` and `b`; calls `f(value, count_a_le, count_b_le)`
/// after each one (cumulative counts of values `<=` it).
fn merged(a: &[(i64, u64)], b: &[(i64, u64)], mut f: impl FnMut(i64, u64, u64)) {
    let (mut i, mut j) = (0, 0);
    let (mut ca, mut cb) = (0u64, 0u64);
    while i < a.len() || j < b.len() {
        let v = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.min(y.0),
            (Some(x), None) => x.0,
            (None, Some(y)) => y.0,
            (None, None) => unreachable!(),
        };
        if a.get(i).is_some_and(|x| x.0 == v) {
            ca += a[i].1;
            i += 1;
        }
        if b.get(j).is_some_and(|y| y.0 == v) {
            cb += b[j].1;
            j += 1;
        }
        f(v, ca, cb);
    }
}

/// The two-sided two-sample KS statistic and its asymptotic p-value, `None` if a sample is
/// empty.
pub fn ks_2samp(a: &[(i64, u64)], b: &[(i64, u64)]) -> Option<(f64, f64)> {
    let (n, m) = (total(a), total(b));
    if n == 0 || m == 0 {
        return None;
    }
    let d = ks_from_numerator(ks_numerator(a, b), n, m);
    Some((d, ks_2samp_asymp_pvalue(d, n, m)))
}

/// `max |ca·m − cb·n|` over the merged values: the KS statistic times `n·m`, exactly.
pub fn ks_numerator(a: &[(i64, u64)], b: &[(i64, u64)]) -> u128 {
    let (n, m) = (total(a), total(b));
    let mut best = 0u128;
    merged(a, b, |_, ca, cb| {
        best = best.max((ca as u128 * m as u128).abs_diff(cb as u128 * n as u128));
    });
    best
}

/// The KS statistic from its exact numerator and the sample sizes.
pub fn ks_from_numerator(num: u128, n: u64, m: u64) -> f64 {
    num as f64 / (n as f64 * m as f64)
}

/// Wasserstein-1 distance between two samples, in value units (not micro-units).
pub fn wasserstein(a: &[(i64, u64)], b: &[(i64, u64)]) -> Option<f64> {
    let (n, m) = (total(a), total(b));
    if n == 0 || m == 0 {
        return None;
    }
    Some(wasserstein_from_numerator(
        wasserstein_numerator(a, b),
        n,
        m,
    ))
}

/// `Σ |ca·m − cb·n| · (next − v)` over consecutive merged values: the Wasserstein-1 distance
/// times `n·m`, in micro-units, exactly.
pub fn wasserstein_numerator(a: &[(i64, u64)], b: &[(i64, u64)]) -> u128 {
    let (n, m) = (total(a), total(b));
    let mut sum = 0u128;
    let mut prev: Option<(i64, u128)> = None;
    merged(a, b, |v, ca, cb| {
        if let Some((pv, diff)) = prev {
            sum += diff * (v as i128 - pv as i128) as u128;
        }
        prev = Some((v, (ca as u128 * m as u128).abs_diff(cb as u128 * n as u128)));
    });
    sum
}

/// The Wasserstein-1 distance (value units) from its exact numerator and the sample sizes.
pub fn wasserstein_from_numerator(num: u128, n: u64, m: u64) -> f64 {
    num as f64 / (n as f64 * m as f64) / MICRO as f64
}

/// Proportions of `counts`, `None` if they are all zero.
fn proportions(counts: &[u64]) -> Option<Vec<f64>> {
    let t: u64 = counts.iter().sum();
    (t > 0).then(|| counts.iter().map(|&c| c as f64 / t as f64).collect())
}

/// Population stability index of `actual` against `expected` bin counts (same bins), each
/// proportion raised to at least [`PSI_FLOOR`].
pub fn psi(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (e, a) = (proportions(expected)?, proportions(actual)?);
    Some(
        e.iter()
            .zip(&a)
            .map(|(&e, &a)| {
                let (e, a) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// `x·ln(x/y)` with the conventions of `scipy.special.rel_entr`.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Jensen–Shannon distance (the square root of the divergence, natural log) between two
/// histograms over the same bins.
pub fn js_distance(p: &[u64], q: &[u64]) -> Option<f64> {
    let (p, q) = (proportions(p)?, proportions(q)?);
    let (mut left, mut right) = (0.0, 0.0);
    for (&p, &q) in p.iter().zip(&q) {
        let m = (p + q) / 2.0;
        left += rel_entr(p, m);
        right += rel_entr(q, m);
    }
    Some(((left + right) / 2.0).sqrt())
}

/// Chi-square test of homogeneity of two rows of category counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// The statistic.
    pub statistic: f64,
    /// Degrees of freedom (occupied categories − 1).
    pub dof: u64,
    /// Its p-value.
    pub p_value: f64,
}

/// Chi-square test of the 2×k table `[a; b]`, columns empty in both rows left out; `None` if a
/// row is empty.
pub fn chi2_homogeneity(a: &[u64], b: &[u64]) -> Option<ChiSquare> {
    let (ta, tb): (u64, u64) = (a.iter().sum(), b.iter().sum());
    if ta == 0 || tb == 0 {
        return None;
    }
    let total = (ta + tb) as f64;
    let mut statistic = 0.0;
    let mut k = 0u64;
    for (&x, &y) in a.iter().zip(b) {
        let col = (x + y) as f64;
        if col == 0.0 {
            continue;
        }
        k += 1;
        for (o, row) in [(x, ta), (y, tb)] {
            let e = row as f64 * col / total;
            statistic += (o as f64 - e).powi(2) / e;
        }
    }
    let dof = k.saturating_sub(1);
    if dof == 0 {
        // One category: the rows cannot differ (scipy returns 0 and p = 1).
        return Some(ChiSquare {
            statistic: 0.0,
            dof,
            p_value: 1.0,
        });
    }
    let p_value = ChiSquared::new(dof as f64)
        .expect("positive degrees of freedom")
        .sf(statistic);
    Some(ChiSquare {
        statistic,
        dof,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) {
        let rel = (got - want).abs() / want.abs().max(1e-300);
        assert!(
            rel <= 1e-9 || got == want,
            "got {got:e}, want {want:e} (rel {rel:e})"
        );
    }

    /// Sorted multiset of micro-unit values.
    fn ms(values: &[f64]) -> Vec<(i64, u64)> {
        let mut v: Vec<i64> = values
            .iter()
            .map(|x| crate::records::to_micro(*x))
            .collect();
        v.sort();
        let mut out: Vec<(i64, u64)> = Vec::new();
        for x in v {
            match out.last_mut() {
                Some((y, c)) if *y == x => *c += 1,
                _ => out.push((x, 1)),
            }
        }
        out
    }

    /// splitmix64, as in `tests/reference/drift_vectors.py`.
    fn splitmix64(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The script's `sample(seed, n, modulus, offset, grain)`, in micro-units.
    fn sample(seed: u64, n: usize, modulus: u64, offset: i64, grain: i64) -> Vec<(i64, u64)> {
        let mut s = seed;
        let v: Vec<f64> = (0..n)
            .map(|_| {
                let x = (splitmix64(&mut s) % modulus) as i64 + offset;
                x.div_euclid(grain) as f64 * grain as f64 / 1e6
            })
            .collect();
        ms(&v)
    }

    /// `scipy.stats.ks_2samp(a, b, method="asymp")` (statistic, pvalue) and
    /// `scipy.stats.wasserstein_distance(a, b)` on the samples of `drift_vectors.py`.
    #[test]
    fn ks_and_wasserstein_equal_scipy() {
        #[rustfmt::skip]
        let cases: [(&str, (u64, usize, u64, i64, i64), (u64, usize, u64, i64, i64), f64, f64, f64); 4] = [
            ("small_ties", (1, 30, 10000000, 0, 1000000), (2, 45, 12000000, 500000, 1000000), 0.3444444444444445, 0.020677743829965123, 1.9444444444444446),
            ("shifted", (3, 2000, 1000000, 0, 1), (4, 3000, 1000000, 100000, 1), 0.11283333333333334, 9.181710055627933e-14, 0.09528242800000002),
            ("same_law_coarse", (5, 5000, 2000000, 0, 1000), (6, 4000, 2000000, 0, 1000), 0.028749999999999942, 0.04980748542444946, 0.0236885),
            ("negative_values", (7, 700, 3000000, -1500000, 10), (8, 900, 2000000, -1000000, 10), 0.1850793650793651, 2.7545482524306953e-12, 0.2921555095238095),
        ];
        for (name, sa, sb, d, p, w) in cases {
            let a = sample(sa.0, sa.1, sa.2, sa.3, sa.4);
            let b = sample(sb.0, sb.1, sb.2, sb.3, sb.4);
            let (got_d, got_p) = ks_2samp(&a, &b).unwrap();
            eprintln!("{name}");
            close(got_d, d);
            close(got_p, p);
            close(wasserstein(&a, &b).unwrap(), w);
            // Symmetric in its arguments.
            assert_eq!(ks_2samp(&b, &a).unwrap().0, got_d);
        }
        assert_eq!(ks_2samp(&[], &[(1, 1)]), None);
        assert_eq!(wasserstein(&[(5, 2)], &[(5, 7)]), Some(0.0));
    }

    /// PSI by the script's textbook formula (proportions clipped below at 0.001) and
    /// `scipy.spatial.distance.jensenshannon(e, a)` on fixed histograms.
    #[test]
    fn psi_and_js_equal_reference() {
        #[rustfmt::skip]
        let cases: [(&[u64], &[u64], f64, f64); 4] = [
            (&[100, 200, 300, 400], &[110, 190, 320, 380], 0.0037826710524211903, 0.021742578703764497),
            (&[500, 0, 250, 250], &[100, 300, 0, 600], 4.030463951517408, 0.5481923756007783),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], &[10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 1.3824408290923338, 0.38897734168227555),
            (&[100000, 20, 5, 0], &[30, 0, 4000, 2], 11.701010152175877, 0.8190906649179921),
        ];
        for (e, a, p, j) in cases {
            close(psi(e, a).unwrap(), p);
            close(js_distance(e, a).unwrap(), j);
        }
        assert_eq!(psi(&[0, 0], &[1, 2]), None);
        assert_eq!(js_distance(&[3, 4], &[3, 4]), Some(0.0));
    }

    /// `scipy.stats.chi2_contingency([a, b], correction=False)` (statistic, dof, pvalue), with
    /// columns empty in both rows removed first.
    #[test]
    fn chi_square_equals_scipy() {
        #[rustfmt::skip]
        let cases: [(&[u64], &[u64], f64, u64, f64); 4] = [
            (&[120, 80, 40], &[100, 90, 60], 6.204919786096255, 2, 0.04493852236009972),
            (&[5000, 3000, 1000, 1000, 0], &[400, 350, 150, 50, 50], 571.5298593299891, 4, 2.2459183452534355e-122),
            (&[10, 0, 5], &[0, 10, 5], 20.0, 2, 4.539992976248486e-05),
            (&[100000, 50000], &[1000, 1500], 781.8257553910732, 1, 4.8253149416921253e-172),
        ];
        for (a, b, s, dof, p) in cases {
            let got = chi2_homogeneity(a, b).unwrap();
            close(got.statistic, s);
            assert_eq!(got.dof, dof);
            close(got.p_value, p);
        }
        let one = chi2_homogeneity(&[5, 0], &[7, 0]).unwrap();
        assert_eq!((one.statistic, one.dof, one.p_value), (0.0, 0, 1.0));
        assert_eq!(chi2_homogeneity(&[0, 0], &[1, 2]), None);
    }
}
