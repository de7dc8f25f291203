"""The engagement DGP of seed notebook 000: tau = 2 + 3·engagement, randomised treatment."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hte_bench.data.base import Dataset, Truth

MODIFIERS = ["engagement"]


def tau(X: pd.DataFrame) -> np.ndarray:
    """True CATE of the engagement DGP."""
    return 2.0 + 3.0 * np.asarray(X["engagement"], dtype=float)


def _draw(rs: np.random.RandomState, n: int, noise: float, p_treat: float):
    # Draw order is the notebook's: age, engagement, T, noise. Changing it breaks the first-row test.
    age = rs.normal(40, 10, n)
    engagement = rs.uniform(0, 1, n)
    T = rs.binomial(1, p_treat, n)
    X = pd.DataFrame({"age": age, "engagement": engagement})
    te = tau(X)
    Y = te * T + age * 0.1 + rs.normal(0, noise, n)
    return X, T, Y, te


def generate(seed: int, n: int = 1000, n_test: int = 1000, noise: float = 1.0,
             p_treat: float = 0.5) -> tuple[Dataset, Truth]:
    """Draw train then test sample from the legacy RandomState(seed) stream, as the notebook did.

    ``RandomState(seed)`` is the same stream as ``np.random.seed(seed)`` without touching global state,
    so seed 42 reproduces the notebook's table exactly.
    """
    rs = np.random.RandomState(seed)
    X, T, Y, te = _draw(rs, n, noise, p_treat)
    Xt, Tt, Yt, tet = _draw(rs, n_test, noise, p_treat)
    dataset = Dataset(X_train=X, T_train=T, Y_train=Y, X_test=Xt, T_test=Tt, Y_test=Yt)
    truth = Truth(tau_train=te, tau_test=tet,
                  propensity_train=np.full(n, p_treat), propensity_test=np.full(n_test, p_treat),
                  modifiers=list(MODIFIERS), tau_fn=tau)
    return dataset, truth
