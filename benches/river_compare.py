#!/usr/bin/env python3
"""River's LogisticRegression pipeline on the same example stream as `cargo bench --bench learn`.

A benchmark, not a test. The stream is the CSV the Rust bench writes:

    TIDEMARK_LEARN_EXPORT=/tmp/learn-1m.csv cargo bench --bench learn
    pip install river==0.26.1 numpy
    python3 benches/river_compare.py /tmp/learn-1m.csv

One row per example in learning order (timestamp, then event id): the raw features (empty is
null), the label the learner is taught (`label`, the event's first label; 2 % of them are
corrected later), the final label every prediction is scored against (`truth`), the drift
phase by event time, and reference probabilities (`prod`, the production model's score;
`oracle`, the generator's true concept probability; `tidemark`, the tidemark learner's
prequential score with the default `[learn]` settings).

River: `StandardScaler` over the numeric features and `OneHotEncoder` over the categorical ones
(a null is an absent key), then `LogisticRegression()` with River's defaults (SGD, rate 0.01),
scored with `predict_proba_one` before `learn_one` on every example. Only those two calls are
timed. `--numpy` also times a tight numpy minibatch loop that does what tidemark's model does
(running standardization, one-hot, AdaGrad rate 0.1, gradient norm clipped to 10, L2 1e-5,
prequential per minibatch, minibatches cut per timestamp).
"""

import argparse
import csv
import math
import sys
import time

PHASES = [
    "concept 0",
    "concept 0, data drift",
    "concept 1 (abrupt)",
    "concept 1 -> 2 (gradual)",
    "concept 2",
]
NUMERIC = ["amount", "age_days", "velocity", "score_ext"]
CATEGORICAL = ["country", "device"]


class Metrics:
    """Accuracy (threshold 0.5) and mean log-loss (p clipped to [1e-15, 1 - 1e-15])."""

    def __init__(self):
        self.n = [0] * 6
        self.correct = [0] * 6
        self.loss = [0.0] * 6

    def add(self, phase, p, y):
        q = min(max(p, 1e-15), 1.0 - 1e-15)
        loss = -math.log(q) if y == 1 else -math.log(1.0 - q)
        ok = int((p >= 0.5) == (y == 1))
        for k in (0, phase + 1):
            self.n[k] += 1
            self.correct[k] += ok
            self.loss[k] += loss

    def row(self, name):
        cells = []
        for k in range(6):
            if self.n[k] == 0:
                cells.append(f"{'-':>17}")
            else:
                cells.append(f"{self.correct[k] / self.n[k]:>8.4f} {self.loss[k] / self.n[k]:>8.4f}")
        return f"  {name:<44}" + " |".join(cells)


def header():
    cols = ["overall"] + PHASES
    return f"  {'accuracy / log-loss':<44}" + " |".join(f"{c[:17]:>17}" for c in cols)


def read(path):
    rows = []
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        for d in r:
            x = {}
            for k in NUMERIC:
                if d[k] != "":
                    x[k] = float(d[k])
            for k in CATEGORICAL:
                if d[k] != "":
                    x[k] = d[k]
            rows.append(
                (
                    int(d["ts"]),
                    int(d["phase"]),
                    x,
                    int(d["label"]),
                    int(d["truth"]),
                    float(d["prod"]) if d["prod"] != "" else None,
                    float(d["oracle"]),
                    float(d["tidemark"]) if d["tidemark"] != "" else None,
                )
            )
    return rows


def river_model():
    import numbers

    from river import compose, linear_model, preprocessing

    return compose.Pipeline(
        compose.TransformerUnion(
            compose.SelectType(numbers.Number) | preprocessing.StandardScaler(),
            compose.SelectType(str) | preprocessing.OneHotEncoder(),
        ),
        linear_model.LogisticRegression(),
    )


def run_river(rows):
    model = river_model()
    m = Metrics()
    probs = []
    predict, learn = model.predict_proba_one, model.learn_one
    start = time.perf_counter()
    for _, _, x, label, _, _, _, _ in rows:
        probs.append(predict(x).get(True, 0.0))
        learn(x, label == 1)
    secs = time.perf_counter() - start
    for (_, phase, _, _, truth, _, _, _), p in zip(rows, probs):
        m.add(phase, p, truth)
    return m, secs


def run_numpy(rows, batch):
    """Prequential minibatch logistic regression, the tidemark model's algorithm, in numpy."""
    import numpy as np

    n = len(rows)
    cats = sorted({(k, x[k]) for _, _, x, _, _, _, _, _ in rows for k in CATEGORICAL if k in x})
    col = {c: i for i, c in enumerate(cats)}
    num = np.full((n, len(NUMERIC)), np.nan)
    onehot = np.zeros((n, len(cats)))
    for i, (_, _, x, _, _, _, _, _) in enumerate(rows):
        for j, k in enumerate(NUMERIC):
            if k in x:
                num[i, j] = x[k]
        for k in CATEGORICAL:
            if k in x:
                onehot[i, col[(k, x[k])]] = 1.0
    y = np.array([r[3] for r in rows], dtype=float)
    ts = np.array([r[0] for r in rows])
    # Minibatches never straddle a timestamp, as in Learner::step.
    bounds = []
    starts = np.flatnonzero(np.r_[True, ts[1:] != ts[:-1]])
    ends = np.r_[starts[1:], n]
    for a, b in zip(starts, ends):
        bounds.extend((s, min(s + batch, b)) for s in range(a, b, batch))

    rate, eps, clip, l2 = 0.1, 1e-8, 10.0, 1e-5
    dn, dc = num.shape[1], onehot.shape[1]
    w = np.zeros(dn + dc)
    bias = 0.0
    g2 = np.zeros(dn + dc + 1)
    cnt = np.zeros(dn)
    mean = np.zeros(dn)
    m2 = np.zeros(dn)
    p_out = np.empty(n)
    start = time.perf_counter()
    for a, b in bounds:
        xn = num[a:b]
        present = ~np.isnan(xn)
        sd = np.sqrt(np.divide(m2, cnt, out=np.zeros(dn), where=cnt > 0))
        z = np.where(present & (cnt >= 2) & (sd > 0), (xn - mean) / np.where(sd > 0, sd, 1.0), 0.0)
        z = np.nan_to_num(z)
        x = np.hstack([z, onehot[a:b]])
        p = 1.0 / (1.0 + np.exp(-(x @ w + bias)))
        p_out[a:b] = p
        r = p - y[a:b]
        norm = np.abs(r) * np.sqrt((x * x).sum(axis=1) + 1.0)
        g = r * np.where(norm > clip, clip / norm, 1.0)
        grad = np.empty(dn + dc + 1)
        grad[:-1] = g @ x / (b - a) + l2 * w
        grad[-1] = g.sum() / (b - a)
        g2 += grad * grad
        step = rate * grad / (np.sqrt(g2) + eps)
        w -= step[:-1]
        bias -= step[-1]
        # The scaler learns the batch after the step (Chan et al.'s parallel update).
        k = present.sum(axis=0)
        if k.any():
            s = np.where(present, xn, 0.0).sum(axis=0)
            bmean = np.divide(s, k, out=np.zeros(dn), where=k > 0)
            bm2 = (np.where(present, xn - bmean, 0.0) ** 2).sum(axis=0)
            tot = cnt + k
            delta = bmean - mean
            mean = mean + np.divide(delta * k, tot, out=np.zeros(dn), where=tot > 0)
            m2 = m2 + bm2 + np.divide(delta * delta * cnt * k, tot, out=np.zeros(dn), where=tot > 0)
            cnt = tot
    secs = time.perf_counter() - start
    m = Metrics()
    for (_, phase, _, _, truth, _, _, _), p in zip(rows, p_out):
        m.add(phase, float(p), truth)
    return m, secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="the stream written by TIDEMARK_LEARN_EXPORT=... cargo bench --bench learn")
    ap.add_argument("--limit", type=int, default=0, help="only the first N examples")
    ap.add_argument("--numpy", action="store_true", help="also time a tight numpy minibatch loop")
    ap.add_argument("--numpy-batch", type=int, action="append", help="numpy minibatch size (repeatable; default 64)")
    ap.add_argument("--no-river", action="store_true", help="skip River")
    a = ap.parse_args()

    t = time.perf_counter()
    rows = read(a.csv)
    if a.limit:
        rows = rows[: a.limit]
    print(f"{len(rows)} examples read from {a.csv} in {time.perf_counter() - t:.1f} s", flush=True)

    import river

    results = []
    if not a.no_river:
        m, secs = run_river(rows)
        print(
            f"River {river.__version__} StandardScaler + OneHotEncoder | LogisticRegression, "
            f"predict_proba_one + learn_one: {len(rows) / secs:.0f} examples/s ({secs:.1f} s)",
            flush=True,
        )
        results.append(("River LogisticRegression", m))
    if a.numpy:
        import numpy as np

        for batch in a.numpy_batch or [64]:
            m, secs = run_numpy(rows, batch)
            print(
                f"numpy {np.__version__} minibatch loop (batch {batch}, AdaGrad): "
                f"{len(rows) / secs:.0f} examples/s ({secs:.2f} s)",
                flush=True,
            )
            results.append((f"numpy minibatch {batch}", m))

    refs = [("tidemark (scores from the CSV)", 7), ("production model (prod-v1 score)", 5), ("oracle (true concept probability)", 6)]
    for name, k in refs:
        m = Metrics()
        for r in rows:
            if r[k] is not None:
                m.add(r[1], r[k], r[4])
        if m.n[0]:
            results.append((name, m))

    print(header())
    for name, m in results:
        print(m.row(name))


if __name__ == "__main__":
    sys.exit(main())
