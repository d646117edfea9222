"""Scores events with a tidemark model version, exactly as tidemark does.

This module is the `python_function` flavor of the MLflow models tidemark publishes
(`loader_module: tidemark_pyfunc`, `data: model.json`): `mlflow.pyfunc.load_model(uri)
.predict(df)` takes a DataFrame with the events schema's columns and returns the score of each
row. It repeats tidemark's scoring (src/learn/model.rs) operation for operation, so the scores
are the ones tidemark's model gives:

- a numeric value is read as tidemark reads it: as micro-units, rounded half away from zero,
  then standardized with the version's running mean and deviation (0 until the feature has a
  spread); a missing value contributes nothing;
- a categorical value (a string, or an integer as its digits) sets one of 2^hash_bits buckets
  chosen by FNV-1a over the feature's index and the value's UTF-8 bytes;
- the margin adds the bias and the weighted values in tidemark's order; the score is its
  logistic function (log loss) or the margin clamped to [0, 1] (squared loss).

A value tidemark would refuse (a string where a number belongs, a boolean, a number beyond
±1e9) raises ValueError naming the row and the column. Only the standard library and pandas
(which MLflow brings) are used.
"""

import json
import math

_MASK64 = (1 << 64) - 1
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x00000100000001B3
_MICRO = 1e6
_LIMIT = 1.0e9


def fnv1a(parts):
    """FNV-1a over byte strings, each part followed by a separator byte (tidemark's `fnv1a`)."""
    h = _FNV_OFFSET
    for part in parts:
        for b in part:
            h ^= b
            h = (h * _FNV_PRIME) & _MASK64
        h ^= 0xFF
        h = (h * _FNV_PRIME) & _MASK64
    return h


def _round_half_away(m):
    a = abs(m)
    f = math.floor(a)
    r = f + 1.0 if a - f >= 0.5 else f
    return math.copysign(r, m)


def _missing(v):
    if v is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(v))
    except (TypeError, ValueError, ImportError):
        return False


def _number(v, row, column):
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        raise ValueError(f"row {row}, column {column!r}: expected a number, found the boolean {v}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"row {row}, column {column!r}: expected a number, found {v!r}") from None
    if not math.isfinite(x) or abs(x) > _LIMIT:
        raise ValueError(f"row {row}, column {column!r}: value {x} is outside ±1e9")
    # tidemark keeps numbers as integer micro-units.
    return _round_half_away(x * _MICRO) / _MICRO


def _text(v, row, column):
    if isinstance(v, str):
        if not v:
            raise ValueError(f"row {row}, column {column!r}: empty string")
        return v
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        raise ValueError(f"row {row}, column {column!r}: expected a string, found the boolean {v}")
    if isinstance(v, int) or type(v).__name__.startswith(("int", "uint")):
        return str(int(v))
    if isinstance(v, float) and v.is_integer():
        # pandas turns an integer column with missing values into floats.
        return str(int(v))
    raise ValueError(f"row {row}, column {column!r}: expected a string or an integer, found {v!r}")


def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class TidemarkModel:
    """One tidemark model version: its parameters and feature spec."""

    def __init__(self, version_file):
        self.version = version_file["version"]
        m = version_file["model"]
        self.loss = m["loss"]
        self.numeric = [name for name, _ in m["features"]["numeric"]]
        self.categorical = [name for name, _ in m["features"]["categorical"]]
        self.mask = (1 << m["features"]["hash_bits"]) - 1
        self.weights = m["weights"]
        self.bias = m["bias"]
        self.n = m["scaler"]["n"]
        self.mean = m["scaler"]["mean"]
        self.m2 = m["scaler"]["m2"]

    def _z(self, i, x):
        if self.n[i] < 2 or self.m2[i] <= 0.0:
            return 0.0
        sd = math.sqrt(self.m2[i] / self.n[i])
        return (x - self.mean[i]) / sd

    def score(self, get, row=0):
        """The score of one event; `get(column)` returns its value (None when absent)."""
        z = self.bias
        for i, column in enumerate(self.numeric):
            v = get(column)
            if not _missing(v):
                z += self.weights[i] * self._z(i, _number(v, row, column))
        nn = len(self.numeric)
        for j, column in enumerate(self.categorical):
            v = get(column)
            if not _missing(v):
                text = _text(v, row, column)
                h = fnv1a([j.to_bytes(2, "little"), text.encode("utf-8")]) & self.mask
                z += self.weights[nn + h] * 1.0
        if self.loss == "log":
            return _sigmoid(z)
        return min(max(z, 0.0), 1.0)

    def predict(self, model_input, params=None):
        """The score of every row of a DataFrame (or a list of dicts) of events, in order."""
        import pandas as pd

        data = model_input

        if isinstance(data, dict):
            data = pd.DataFrame(data)
        elif isinstance(data, list):
            data = pd.DataFrame.from_records(data)
        columns = set(data.columns)
        records = data.to_dict("records")
        scores = [
            self.score(lambda c, r=r: r[c] if c in columns else None, row)
            for row, r in enumerate(records)
        ]
        import numpy as np

        return np.asarray(scores, dtype=np.float64)


def load(path):
    """The model of a tidemark version file."""
    with open(path, encoding="utf-8") as f:
        return TidemarkModel(json.load(f))


def _load_pyfunc(data_path):
    """MLflow's entry point for `loader_module` models: `data_path` is the version file."""
    return load(data_path)
