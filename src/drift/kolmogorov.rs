//! TEMPORARY stand-in until the helper delivers.
/// x
pub fn ks_2samp_asymp_pvalue(d: f64, n1: u64, n2: u64) -> f64 {
    let en = (n1 as f64 * n2 as f64) / (n1 + n2) as f64;
    let l = en.sqrt() * d;
    let mut s = 0.0;
    for k in 1..100 {
        let k = k as f64;
        s += 2.0 * (-1f64).powf(k - 1.0) * (-2.0 * k * k * l * l).exp();
    }
    s.clamp(0.0, 1.0)
}
