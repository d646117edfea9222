"""Expected values of the drift statistics' unit tests (src/drift/stats.rs).

Run with scipy 1.17.1 / numpy 2.4: `python3 tests/reference/drift_vectors.py`. The samples are
rebuilt in Rust by the same splitmix64 generator, so only the results are copied into the tests.
"""
import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

MASK = (1 << 64) - 1


def splitmix64(seed):
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def sample(seed, n, modulus, offset, grain):
    """n values (x % modulus + offset) rounded down to `grain`, in micro-units, as floats."""
    g = splitmix64(seed)
    return np.array([((next(g) % modulus + offset) // grain * grain) / 1e6 for _ in range(n)])


def psi(expected, actual):
    e = np.clip(np.asarray(expected, float) / np.sum(expected), 0.001, None)
    a = np.clip(np.asarray(actual, float) / np.sum(actual), 0.001, None)
    return float(np.sum((a - e) * np.log(a / e)))


cases = [
    ("small_ties", sample(1, 30, 10_000_000, 0, 1_000_000), sample(2, 45, 12_000_000, 500_000, 1_000_000)),
    ("shifted", sample(3, 2000, 1_000_000, 0, 1), sample(4, 3000, 1_000_000, 100_000, 1)),
    ("same_law_coarse", sample(5, 5000, 2_000_000, 0, 1000), sample(6, 4000, 2_000_000, 0, 1000)),
    ("negative_values", sample(7, 700, 3_000_000, -1_500_000, 10), sample(8, 900, 2_000_000, -1_000_000, 10)),
]
for name, a, b in cases:
    ks = stats.ks_2samp(a, b, method="asymp")
    w = stats.wasserstein_distance(a, b)
    print(f'("{name}", {len(a)}, {len(b)}, {float(ks.statistic)!r}, {float(ks.pvalue)!r}, {float(w)!r}),')

hist = [
    ([100, 200, 300, 400], [110, 190, 320, 380]),
    ([500, 0, 250, 250], [100, 300, 0, 600]),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
    ([100000, 20, 5, 0], [30, 0, 4000, 2]),
]
for e, a in hist:
    print(f"({e}, {a}, {psi(e, a)!r}, {float(jensenshannon(e, a))!r}),")

tables = [
    ([120, 80, 40], [100, 90, 60]),
    ([5000, 3000, 1000, 1000, 0], [400, 350, 150, 50, 50]),
    ([10, 0, 5], [0, 10, 5]),
    ([100000, 50000], [1000, 1500]),
]
for a, b in tables:
    cols = [i for i in range(len(a)) if a[i] + b[i] > 0]
    t = np.array([[a[i] for i in cols], [b[i] for i in cols]])
    r = stats.chi2_contingency(t, correction=False)
    print(f"({a}, {b}, {float(r.statistic)!r}, {r.dof}, {float(r.pvalue)!r}),")
