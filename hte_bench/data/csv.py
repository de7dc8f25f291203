"""The user's own data from a CSV file: outcome, binary treatment and feature columns, checked on load."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from hte_bench.data.base import DataError


def read_observed(path: str | Path, outcome: str, treatment: str,
                  features: Optional[Sequence[str]] = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(X, T, Y) from a CSV; features default to every other column. DataError names any bad column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"csv: file {str(path)!r} does not exist")
    frame = pd.read_csv(path)
    columns = [str(c) for c in frame.columns]
    features = list(features) if features else [c for c in columns if c not in (outcome, treatment)]
    missing = [c for c in (outcome, treatment, *features) if c not in columns]
    if missing:
        raise DataError(f"csv: column(s) {missing} not in {path.name}; available columns: {columns}")
    used = frame[[outcome, treatment, *features]]
    nan = [c for c in used.columns if used[c].isna().any()]
    if nan:
        raise DataError(f"csv: NaN in column(s) {nan} of {path.name}")
    non_numeric = [c for c in used.columns if not pd.api.types.is_numeric_dtype(used[c])]
    if non_numeric:
        raise DataError(f"csv: column(s) {non_numeric} are not numeric; encode them first")
    T = used[treatment].to_numpy()
    values = sorted(set(np.unique(T).tolist()))
    if not set(values) <= {0, 1}:
        raise DataError(f"csv: treatment column {treatment!r} must be 0/1, found values {values[:5]}")
    if len(values) < 2:
        raise DataError(f"csv: treatment column {treatment!r} is constant ({values[0]}); both arms are needed")
    return used[features].astype(float).reset_index(drop=True), T.astype(int), used[outcome].to_numpy(float)
