"""Simulation setups A–D of Nie & Wager (2021), Section 6, with the paper's outcome model Y = b + (W − ½)τ + σε.

Nie, X. and Wager, S. (2021). Quasi-oracle estimation of heterogeneous treatment effects.
Biometrika 108(2), 299–319. Features are x1..xd; every setup draws

    W | X ~ Bernoulli(e(X)),   ε ~ N(0, 1),   Y = b(X) + (W − 0.5)·τ(X) + σ·ε,

so b(X) = (E[Y(0)|X] + E[Y(1)|X]) / 2 is the mean of the two potential-outcome surfaces, not the control
surface: Y(0) = b − τ/2 and Y(1) = b + τ/2 (the authors' code, xnie/rlearner run_simu.R, does the same).

A  (hard nuisance, easy effect)   X ~ U(0, 1)^d
   b = sin(π x1 x2) + 2 (x3 − 0.5)² + x4 + 0.5 x5
   e = trim_0.1(sin(π x1 x2)),  trim_η(z) = max{η, min(z, 1 − η)}
   τ = (x1 + x2) / 2
B  (randomised trial)             X ~ N(0, I_d)
   b = max{0, x1 + x2, x3} + max{0, x4 + x5}
   e = 1/2
   τ = x1 + log(1 + exp(x2))
C  (no heterogeneity)             X ~ N(0, I_d)
   b = 2 log(1 + exp(x1 + x2 + x3))
   e = 1 / (1 + exp(x2 + x3))
   τ = 1
D  (unrelated arms)               X ~ N(0, I_d)
   b = (max{0, x1 + x2 + x3} + max{0, x4 + x5}) / 2
   e = 1 / (1 + exp(−x1) + exp(−x2))
   τ = max{0, x1 + x2 + x3} − max{0, x4 + x5}

The paper draws the training and the test sample independently from the same design; so does ``generate``
(train first, then test, from one ``default_rng(seed)`` stream).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from hte_bench.data.base import Dataset, DataError, Truth

SETUPS = ("A", "B", "C", "D")
# C only uses x1..x3; the others reach x5.
MIN_D = {"A": 5, "B": 5, "C": 3, "D": 5}
MODIFIERS = {"A": ["x1", "x2"], "B": ["x1", "x2"], "C": [], "D": ["x1", "x2", "x3", "x4", "x5"]}


def _cols(X: pd.DataFrame, k: int) -> list[np.ndarray]:
    """x1..xk of a feature frame as float arrays."""
    return [np.asarray(X[f"x{j}"], dtype=float) for j in range(1, k + 1)]


def _softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow for large z."""
    return np.logaddexp(0.0, z)


def baseline(setup: str, X: pd.DataFrame) -> np.ndarray:
    """b(X): the mean of the two potential-outcome surfaces."""
    if setup == "A":
        x1, x2, x3, x4, x5 = _cols(X, 5)
        return np.sin(np.pi * x1 * x2) + 2 * (x3 - 0.5) ** 2 + x4 + 0.5 * x5
    if setup == "B":
        x1, x2, x3, x4, x5 = _cols(X, 5)
        return np.maximum.reduce([np.zeros_like(x1), x1 + x2, x3]) + np.maximum(0, x4 + x5)
    if setup == "C":
        x1, x2, x3 = _cols(X, 3)
        return 2 * _softplus(x1 + x2 + x3)
    x1, x2, x3, x4, x5 = _cols(X, 5)
    return (np.maximum(0, x1 + x2 + x3) + np.maximum(0, x4 + x5)) / 2


def propensity(setup: str, X: pd.DataFrame) -> np.ndarray:
    """e(X) = P(W = 1 | X)."""
    if setup == "A":
        x1, x2 = _cols(X, 2)
        return np.clip(np.sin(np.pi * x1 * x2), 0.1, 0.9)
    if setup == "B":
        return np.full(len(X), 0.5)
    if setup == "C":
        _, x2, x3 = _cols(X, 3)
        return 1 / (1 + np.exp(x2 + x3))
    x1, x2 = _cols(X, 2)
    return 1 / (1 + np.exp(-x1) + np.exp(-x2))


def tau(setup: str, X: pd.DataFrame) -> np.ndarray:
    """True CATE τ(X) of the setup."""
    if setup == "A":
        x1, x2 = _cols(X, 2)
        return (x1 + x2) / 2
    if setup == "B":
        x1, x2 = _cols(X, 2)
        return x1 + _softplus(x2)
    if setup == "C":
        return np.ones(len(X))
    x1, x2, x3, x4, x5 = _cols(X, 5)
    return np.maximum(0, x1 + x2 + x3) - np.maximum(0, x4 + x5)


def _check(setup, n, n_test, d, sigma) -> str:
    """The setup letter, after checking every knob; DataError names the first bad one."""
    is_int = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    if not isinstance(setup, str) or setup.upper() not in SETUPS:
        raise DataError(f"nie_wager: setup={setup!r} is not allowed; setup must be one of {', '.join(SETUPS)}")
    setup = setup.upper()
    for name, value in (("n", n), ("n_test", n_test)):
        if not is_int(value) or value < 1:
            raise DataError(f"nie_wager: {name}={value!r} is not allowed; {name} must be an integer ≥ 1")
    if not is_int(d) or d < MIN_D[setup]:
        raise DataError(f"nie_wager: d={d!r} is not allowed for setup {setup}; d must be an integer "
                        f"≥ {MIN_D[setup]} (the setup uses x1..x{MIN_D[setup]})")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) or not sigma >= 0 \
            or not np.isfinite(sigma):
        raise DataError(f"nie_wager: sigma={sigma!r} is not allowed; sigma must be a finite number ≥ 0")
    return setup


def _draw(rng: np.random.Generator, setup: str, n: int, d: int, sigma: float):
    # Noise is drawn last, so sigma changes Y only: X and W are the same draw for every sigma.
    if setup == "A":
        values = rng.uniform(0.0, 1.0, size=(n, d))
    else:
        values = rng.standard_normal(size=(n, d))
    X = pd.DataFrame(values, columns=[f"x{j}" for j in range(1, d + 1)])
    e = propensity(setup, X)
    W = rng.binomial(1, e).astype(int)
    b, te = baseline(setup, X), tau(setup, X)
    Y = b + (W - 0.5) * te + sigma * rng.standard_normal(n)
    return X, W, Y, te, e, b


def generate(seed: int, n: int = 1000, n_test: int = 1000, setup: str = "A", d: int = 6,
             sigma: float = 1.0) -> tuple[Dataset, Truth]:
    """Draw a training and an independent test sample of Nie–Wager setup A, B, C or D."""
    setup = _check(setup, n, n_test, d, sigma)
    rng = np.random.default_rng(seed)
    X, W, Y, te, e, b = _draw(rng, setup, n, d, float(sigma))
    Xt, Wt, Yt, tet, et, bt = _draw(rng, setup, n_test, d, float(sigma))
    dataset = Dataset(X_train=X, T_train=W, Y_train=Y, X_test=Xt, T_test=Wt, Y_test=Yt)
    truth = Truth(tau_train=te, tau_test=tet, propensity_train=e, propensity_test=et,
                  modifiers=list(MODIFIERS[setup]), tau_fn=partial(tau, setup),
                  extra={"setup": setup, "sigma": float(sigma), "b_train": b, "b_test": bt,
                         "outcome_model": "Y = b(X) + (W - 0.5) tau(X) + sigma eps"})
    return dataset, truth
