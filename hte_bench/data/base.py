"""Containers that keep what an estimator may see (Dataset) apart from what only metrics may see (Truth)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd


@dataclass
class Dataset:
    """Observed data: features with names, binary treatment and outcome, for a training and a test sample."""

    X_train: pd.DataFrame
    T_train: np.ndarray
    Y_train: np.ndarray
    X_test: pd.DataFrame
    T_test: np.ndarray
    Y_test: np.ndarray

    @property
    def feature_names(self) -> list[str]:
        return [str(c) for c in self.X_train.columns]


@dataclass
class Truth:
    """What the generator knows and no estimator may see: unit-level tau, propensity, the true effect modifiers.

    ``tau_train``/``tau_test`` are None for real data without a known effect: truth metrics are then absent.
    """

    tau_train: Optional[np.ndarray]
    tau_test: Optional[np.ndarray]
    propensity_train: np.ndarray
    propensity_test: np.ndarray
    modifiers: list[str]
    # Vectorised true CATE function of the observed features; lets importance be measured on the truth
    # exactly as on an estimate. None when the truth is only known at the sampled units.
    tau_fn: Optional[Callable[[pd.DataFrame], np.ndarray]] = None
    # E[tau(X)] over the generator's covariate distribution, where the generator knows it (closed form or
    # its own fixed large Monte Carlo): the target of intervals for the population ATE (DoubleML's, AIPW's),
    # whose variance includes the spread of tau(X) that the sample ATE (ate_train) conditions away.
    ate_population: Optional[float] = None
    extra: dict = field(default_factory=dict)
    # False when nobody said which features modify the effect (a CSV without data.modifiers): then an empty
    # ``modifiers`` means "unknown", not "none", and the modifier metrics are NaN, not misses.
    modifiers_known: bool = True

    def known_modifiers(self) -> Optional[list[str]]:
        """The true modifiers, or None when they are not known."""
        return list(self.modifiers) if self.modifiers_known else None

    @property
    def ate_train(self) -> float:
        return float(np.mean(self.tau_train)) if self.tau_train is not None else float("nan")

    @property
    def known(self) -> bool:
        """Whether the true effect of every unit is known (False for a user's CSV without a tau column)."""
        return self.tau_train is not None


class DataError(ValueError):
    """Raised when a generated or loaded dataset cannot be used (constant treatment, NaN, wrong shapes)."""


def unpack(drawn) -> tuple[Dataset, Truth]:
    """A generator's return value as (Dataset, Truth); anything else is a DataError in one line saying what it
    returned."""
    if isinstance(drawn, tuple) and len(drawn) == 2 and isinstance(drawn[0], Dataset) and isinstance(drawn[1], Truth):
        return drawn
    what = (f"({type(drawn[0]).__name__}, {type(drawn[1]).__name__})" if len(drawn) == 2 else f"tuple of {len(drawn)}") \
        if isinstance(drawn, tuple) else type(drawn).__name__
    raise DataError(f"data: the generator must return (Dataset, Truth) from hte_bench.data, not {what}")


# Column names that say "the true effect" (or the true propensity): never features (a CSV's by default, a
# generator's ever), or every estimator would read the truth.
TRUTH_NAMES = {"tau", "true_tau", "tau_true", "ite", "true_ite", "cate", "true_cate", "true_effect", "propensity",
               "true_propensity", "propensity_true"}
# Names a CSV's effect column often has: never default features of a CSV (listed in data.features, they are).
EFFECT_NAMES = TRUTH_NAMES | {"tau_i", "effect", "treatment_effect", "te", "true_te", "uplift", "true_uplift"}
# ...and the spellings around them: true_lift, oracle_effect, effect_true, true-ite, TrueUplift.
EFFECT_PATTERN = re.compile(r"^(true|oracle)[_\- ]?(lift|uplift|effect|treatment_effect|te|ite|cate|tau)$|"
                            r"^(lift|uplift|effect|treatment_effect|te|ite|cate|tau)[_\- ]?(true|oracle)$")


def looks_like_effect(name: str) -> bool:
    """Whether a column name says it holds the true effect (EFFECT_NAMES or EFFECT_PATTERN)."""
    return name.lower() in EFFECT_NAMES or bool(EFFECT_PATTERN.match(name.lower()))


# Potential outcomes and counterfactuals (IHDP-style files carry mu0, mu1, y_cfactual): not default features
# either (y0/y1 are left alone: a baseline outcome is a common covariate).
COUNTERFACTUAL_NAMES = {"mu0", "mu1", "mu_0", "mu_1", "y_cfactual", "y_counterfactual", "ycf", "counterfactual"}


def validate(dataset: Dataset, truth: Truth) -> None:
    """Check shapes, binary non-constant treatment and absence of NaN; raise DataError with one line."""
    unpack((dataset, truth))
    for name in ("X_train", "X_test"):
        X = getattr(dataset, name)
        if not isinstance(X, pd.DataFrame):
            raise DataError(f"data: Dataset.{name} must be a pandas DataFrame with feature names, not "
                            f"{type(X).__name__} (e.g. pd.DataFrame(X, columns=['x1', 'x2', ...]))")
    for split, X, T, Y in (("train", dataset.X_train, dataset.T_train, dataset.Y_train),
                           ("test", dataset.X_test, dataset.T_test, dataset.Y_test)):
        n = len(X)
        if n == 0:
            raise DataError(f"data: the {split} sample is empty")
        if len(T) != n or len(Y) != n:
            raise DataError(f"data: {split} X has {n} rows but T has {len(T)} and Y {len(Y)}")
        bad = [str(c) for c in X.columns if X[c].isna().any()]
        if bad:
            raise DataError(f"data: NaN in {split} feature column(s) {bad}")
        if np.isnan(np.asarray(Y, dtype=float)).any():
            raise DataError(f"data: NaN in the {split} outcome Y")
        values = set(np.unique(np.asarray(T)).tolist())
        if not values <= {0, 1}:
            raise DataError(f"data: treatment must be binary 0/1, {split} has values {sorted(values)[:5]}")
        if split == "train" and len(values) < 2:
            raise DataError(f"data: treatment is constant ({values.pop()}) in the train sample; "
                            "both arms are needed")
    if truth.known and (len(truth.tau_train) != len(dataset.X_train) or len(truth.tau_test) != len(dataset.X_test)):
        raise DataError("data: truth tau does not match the sample sizes")
    # The true effect among the features (a generator returning its whole frame): an observed propensity score
    # may be a covariate, an effect column never is.
    leak = [str(c) for c in dataset.X_train.columns if str(c).lower() in TRUTH_NAMES and "propensity" not in str(c).lower()]
    if leak and truth.known:
        raise DataError(f"data: feature {leak[0]!r} looks like the true effect: every estimator would read the truth "
                        f"from it; leave it out of X_train/X_test (Truth carries tau), or rename it if it is an "
                        f"observed covariate")
    missing = [m for m in truth.modifiers if m not in dataset.feature_names]
    if missing:
        raise DataError(f"data: true modifiers {missing} are not feature columns {dataset.feature_names}")
