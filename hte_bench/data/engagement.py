"""The engagement DGP of seed notebook 000: tau = 2 + 3·engagement, randomised treatment."""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from hte_bench.data.base import Dataset, Truth

MODIFIERS = ["engagement"]


def tau(X: pd.DataFrame, heterogeneity: float = 1.0) -> np.ndarray:
    """True CATE of the engagement DGP: 2 + 3·heterogeneity·engagement (the notebook's at 1)."""
    return 2.0 + 3.0 * heterogeneity * np.asarray(X["engagement"], dtype=float)


def _draw(rs: np.random.RandomState, n: int, noise: float, p_treat: float, confounding: float,
          heterogeneity: float):
    # Draw order is the notebook's: age, engagement, T, noise. Changing it breaks the first-row test.
    age = rs.normal(40, 10, n)
    engagement = rs.uniform(0, 1, n)
    if confounding == 0:
        p = np.full(n, p_treat)
        T = rs.binomial(1, p_treat, n)  # the notebook's scalar call: keeps its stream exactly
    else:
        # Older customers are treated more often, and age raises Y too: a confounder to adjust for.
        p = 1 / (1 + np.exp(-(np.log(p_treat / (1 - p_treat)) + confounding * (age - 40) / 10)))
        T = rs.binomial(1, p)
    X = pd.DataFrame({"age": age, "engagement": engagement})
    te = tau(X, heterogeneity)
    Y = te * T + age * 0.1 + rs.normal(0, noise, n)
    return X, T, Y, te, p


def generate(seed: int, n: int = 1000, n_test: int = 1000, noise: float = 1.0, p_treat: float = 0.5,
             confounding: float = 0.0, heterogeneity: float = 1.0) -> tuple[Dataset, Truth]:
    """Draw train then test sample from the legacy RandomState(seed) stream, as the notebook did.

    ``RandomState(seed)`` is the same stream as ``np.random.seed(seed)`` without touching global state,
    so seed 42 reproduces the notebook's table exactly.
    """
    rs = np.random.RandomState(seed)
    X, T, Y, te, p = _draw(rs, n, noise, p_treat, confounding, heterogeneity)
    Xt, Tt, Yt, tet, pt = _draw(rs, n_test, noise, p_treat, confounding, heterogeneity)
    dataset = Dataset(X_train=X, T_train=T, Y_train=Y, X_test=Xt, T_test=Tt, Y_test=Yt)
    truth = Truth(tau_train=te, tau_test=tet, propensity_train=p, propensity_test=pt,
                  modifiers=list(MODIFIERS) if heterogeneity else [],
                  tau_fn=functools.partial(tau, heterogeneity=heterogeneity))
    return dataset, truth
