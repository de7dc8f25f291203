"""The user's own data from a CSV file: outcome, binary treatment and feature columns, checked on load."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from hte_bench.data.base import COUNTERFACTUAL_NAMES, DataError, Dataset, Truth, looks_like_effect


def missing_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a data file (relative paths start in the working folder), or None."""
    path = Path(path).expanduser()
    if path.is_file():
        return None
    where = "" if path.is_absolute() else f" (relative to the working folder {Path.cwd()})"
    if path.is_dir():
        return f"is a folder, not a CSV file{where}"
    near = sorted(p.name for p in path.parent.glob("*.csv"))[:5] if path.parent.is_dir() else []
    found = f"; CSV files there: {', '.join(near)}" if near else ""
    return f"does not exist{where}{found}"


def columns_hint(path: str | Path) -> str:
    """The columns of a CSV file, read from its header only."""
    try:
        columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except Exception as err:  # noqa: BLE001 — unreadable files are reported by _load with the details
        return f"{Path(path).name} cannot be read as CSV: {type(err).__name__}"
    return f"columns in {Path(path).name}: {', '.join(columns)}"


def _load(path: str | Path, outcome: str, treatment: str, features: Optional[Sequence[str]],
          extra: Sequence[str] = (), features_flag: str = "data.features=[...]") -> tuple[pd.DataFrame, list[str]]:
    """The checked frame and its feature names; DataError names any missing, NaN or non-numeric column."""
    problem = missing_file(path)
    if problem:
        raise DataError(f"csv: data.path={str(path)!r}: {problem}")
    path = Path(path).expanduser()
    frame = pd.read_csv(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    reserved = {outcome, treatment, *extra}
    if outcome == treatment:
        raise DataError(f"csv: data.outcome and data.treatment are both {outcome!r}; name two different columns")
    named = [c for c in (outcome, treatment, *extra) if c not in columns]
    if named:  # before the truth-column check, which would otherwise talk about another column
        close = {c: [k for k in columns if k.lower() == c.lower()] for c in named}
        hint = "; ".join(f"did you mean {close[c][0]!r}?" for c in named if close[c])
        raise DataError(f"csv: column(s) {named} not in {path.name}" + (f" ({hint})" if hint else "")
                        + f"; available columns: {columns}")
    if not features:
        # A column of true effects among the default features would leak the truth into every estimator.
        leak = [c for c in columns if c not in reserved and (looks_like_effect(c) or c.lower() in COUNTERFACTUAL_NAMES)]
        if leak:
            if leak[0].lower() in COUNTERFACTUAL_NAMES:
                what, flag = "a potential outcome or counterfactual (known only in a simulation)", None
            else:
                what, flag = ("the true propensity", "data.propensity") if "propensity" in leak[0].lower() else \
                    ("the true effect", "data.tau")
            use = f"give {flag}={leak[0]} to use it as such, or " if flag and features_flag.startswith("data.") else ""
            raise DataError(f"csv: column {leak[0]!r} looks like {what} and would be a feature: {use}list "
                            f"{features_flag} yourself")
        index = [c for c in columns if c.startswith("Unnamed: ")]
        if index:  # pandas' to_csv without index=False: row numbers as a feature
            raise DataError(f"csv: column {index[0]!r} looks like a saved row index and would be a feature: save the "
                            f"file with index=False, or list {features_flag} yourself")
    features = list(features) if features else [c for c in columns if c not in reserved]
    roles = {outcome: "the outcome", treatment: "the treatment", **{c: "a truth column" for c in extra}}
    overlap = [c for c in features if c in roles]
    if overlap:  # a feature that is also Y, T or the truth: the truth leaks, and the frame gets twin columns
        raise DataError(f"csv: column {overlap[0]!r} is {roles[overlap[0]]} and cannot also be a feature; "
                        f"leave it out of {features_flag}")
    twice = sorted({c for c in features if features.count(c) > 1})
    if twice:
        raise DataError(f"csv: feature(s) {twice} listed twice in {features_flag}")
    missing = [c for c in features if c not in columns]  # outcome, treatment and truth columns are checked above
    if missing:
        raise DataError(f"csv: column(s) {missing} not in {path.name}; available columns: {columns}")
    used = frame[[outcome, treatment, *extra, *features]]
    nan = [c for c in used.columns if used[c].isna().any()]
    if nan:
        raise DataError(f"csv: NaN in column(s) {nan} of {path.name}; drop or impute those rows first (or leave "
                        f"such a feature out of {features_flag})")
    non_numeric = [c for c in used.columns if not pd.api.types.is_numeric_dtype(used[c])]
    if non_numeric:
        raise DataError(f"csv: column(s) {non_numeric} are not numeric; encode them first")
    values = sorted(set(np.unique(used[treatment]).tolist()))
    if not set(values) <= {0, 1}:
        raise DataError(f"csv: treatment column {treatment!r} must be 0/1, found values {values[:5]}")
    if len(values) < 2:
        raise DataError(f"csv: treatment column {treatment!r} is constant ({values[0]}); both arms are needed")
    return used.reset_index(drop=True), features


def read_observed(path: str | Path, outcome: str, treatment: str,
                  features: Optional[Sequence[str]] = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(X, T, Y) from a CSV; features default to every other column."""
    frame, features = _load(path, outcome, treatment, features, features_flag="--features a,b,…")
    return (frame[features].astype(float), frame[treatment].to_numpy(int), frame[outcome].to_numpy(float))


def generate(seed: int, path: str, outcome: str, treatment: str, features: Optional[Sequence[str]] = None,
             tau: Optional[str] = None, propensity: Optional[str] = None, test_share: float = 0.3,
             modifiers: Optional[Sequence[str]] = None) -> tuple[Dataset, Truth]:
    """Split a user's CSV into train and test by the seed; the truth is the ``tau`` column if there is one.

    Without ``tau`` the truth is unknown: the harness logs only the truth-free metrics and says so.
    """
    if not 0 < test_share < 1:
        raise DataError(f"data.test_share={test_share} is not allowed; it must be in (0, 1)")
    extra = [c for c in (tau, propensity) if c]
    frame, features = _load(path, outcome, treatment, features, extra)
    n = len(frame)
    n_test = int(round(test_share * n))
    if n_test < 1 or n - n_test < 2:
        raise DataError(f"csv: {n} rows cannot be split with data.test_share={test_share}")
    order = np.random.default_rng(seed).permutation(n)
    parts = {"train": frame.iloc[order[n_test:]].reset_index(drop=True),
             "test": frame.iloc[order[:n_test]].reset_index(drop=True)}
    X = {k: v[features].astype(float) for k, v in parts.items()}
    T = {k: v[treatment].to_numpy(int) for k, v in parts.items()}
    Y = {k: v[outcome].to_numpy(float) for k, v in parts.items()}

    def values(split: str, column: Optional[str]) -> np.ndarray:
        part = parts[split]
        return part[column].to_numpy(float) if column else np.full(len(part), np.nan)

    dataset = Dataset(X_train=X["train"], T_train=T["train"], Y_train=Y["train"],
                      X_test=X["test"], T_test=T["test"], Y_test=Y["test"])
    truth = Truth(tau_train=values("train", tau) if tau else None, tau_test=values("test", tau) if tau else None,
                  propensity_train=values("train", propensity), propensity_test=values("test", propensity),
                  modifiers=list(modifiers or []), modifiers_known=modifiers is not None, tau_fn=None,
                  extra={"truth": f"column {tau!r}" if tau else "none: truth metrics are absent"})
    return dataset, truth
