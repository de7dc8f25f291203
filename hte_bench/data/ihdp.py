"""IHDP semi-synthetic benchmark (Hill 2011, response surfaces A and B) from the copy shipped inside econml.

Where the data come from. econml ships the covariates of Hill's (2011) IHDP simulation as
``econml/data/ihdp/sim.csv`` (985 children, treatment, 25 covariates plus site8 and the mother's race) and
builds the response surfaces in ``econml.data.dgps.ihdp_surface_A`` / ``ihdp_surface_B``. Those loaders
drop the treated children of non-white mothers (Hill's device to make the design observational), which
leaves 747 units (139 treated, 608 control); standardise the six continuous covariates over those 747;
shift ``first`` from {0, 1} to {1, 2}; prepend an intercept column; and, from ``RandomState(seed)``,
draw coefficients β and one N(0, 1) noise term per unit for the observed outcome:

    A:  Y = Xβ + 4·T + ε,                         β_j ∈ {0,1,2,3,4} w.p. (.5,.2,.15,.1,.05);  τ = 4
    B:  Y(1) = Xβ − ω,  Y(0) = exp((X + W)β),      β_j ∈ {0,.1,.2,.3,.4} w.p. (.6,.1,.1,.1,.1)
        τ(x) = xβ − ω − exp((x + W)β),  W = 0.5 on every covariate (0 on the intercept),
        ω chosen so that the mean of τ over the 747-unit sample's treated units is 4 (Hill's CATT = 4)

``generate`` calls econml's loader itself (so a replication is exactly ``ihdp_surface_B(random_state=seed)``),
exposes the 25 covariates under Hill's names (the intercept column is dropped) and splits the 747 units
into train and test with ``default_rng(seed)``. The sample is fixed: ``n`` and ``n_test`` only choose
the split, they cannot add units. τ is the noise-free difference of the potential-outcome surfaces that
econml returns. The propensity is unknown: IHDP was randomised, but the non-random removal of treated
units makes P(T = 1 | X) a property of that deletion rule that nobody has written down, so it is NaN.

How this differs from Shalit et al. (2017). Their IHDP numbers (and most deep-learning papers after
them) use the 1000 ``ihdp_npci_*`` realisations made with the R package npci (Dorie), setting "A", which
in npci's code is the exponential surface (Hill's B). Those were drawn with R's random number generator,
with independent noise for each potential outcome, and come with their own train/validation/test splits;
replication k here is not realisation k there, and surface B here has econml's single noise term on the
observed outcome. √PEHE on the noise-free τ is comparable in kind, not number by number.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from hte_bench.data.base import Dataset, DataError, Truth

N_UNITS = 747
# econml's column order in _process_ihdp_sim_data (after its intercept column).
FEATURES = ["bw", "b.head", "preterm", "birth.o", "nnhealth", "momage", "sex", "twin", "b.marr",
            "mom.lths", "mom.hs", "mom.scoll", "cig", "first", "booze", "drugs", "work.dur", "prenatal",
            "site1", "site2", "site3", "site4", "site5", "site6", "site7"]
SURFACES = ("A", "B")


def tau_surface_a(X: pd.DataFrame) -> np.ndarray:
    """True CATE of surface A: the constant 4."""
    return np.full(len(X), 4.0)


def tau_surface_b(X: pd.DataFrame, beta: np.ndarray, omega: float) -> np.ndarray:
    """True CATE of surface B for one replication's coefficients: xβ − ω − exp((x + W)β)."""
    Z = np.column_stack([np.ones(len(X)), X[FEATURES].to_numpy(dtype=float)])
    offset = np.concatenate([[0.0], np.full(len(FEATURES), 0.5)])
    return (Z @ beta - omega) - np.exp((Z + offset) @ beta)


def _surface_b_coefficients(seed: int, Z: np.ndarray, T: np.ndarray):
    """β and ω of econml's ihdp_surface_B for this seed; its first draw from RandomState(seed) is β."""
    beta = np.random.RandomState(seed).choice([0, 0.1, 0.2, 0.3, 0.4], size=Z.shape[1], replace=True,
                                              p=[0.6, 0.1, 0.1, 0.1, 0.1])
    offset = np.concatenate([[0.0], np.full(Z.shape[1] - 1, 0.5)])
    omega = float(np.mean((Z @ beta - np.exp((Z + offset) @ beta))[T == 1]) - 4)
    return beta, omega


def _split_sizes(n, n_test, test_share: float) -> tuple[int, int]:
    """Train and test sizes of the fixed 747-unit sample; DataError names the knob that cannot work."""
    is_int = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    for name, value in (("n", n), ("n_test", n_test)):
        if value is not None and (not is_int(value) or not 1 <= value <= N_UNITS - 1):
            raise DataError(f"ihdp: {name}={value!r} is not allowed; the sample is fixed at {N_UNITS} units, "
                            f"so {name} must be null or an integer in 1..{N_UNITS - 1}")
    if n is not None and n_test is not None and n + n_test != N_UNITS:
        raise DataError(f"ihdp: n={n} and n_test={n_test} are not allowed together; the sample is fixed, "
                        f"n + n_test must be {N_UNITS} (or give only one of them)")
    if n_test is None and n is None:
        ok = isinstance(test_share, (int, float)) and not isinstance(test_share, bool) and 0 < test_share < 1
        n_test = round(test_share * N_UNITS) if ok else 0
        if not 1 <= n_test <= N_UNITS - 1:
            raise DataError(f"ihdp: test_share={test_share!r} is not allowed; test_share must be a number "
                            f"in (0, 1) giving between 1 and {N_UNITS - 1} test units")
    elif n_test is None:
        n_test = N_UNITS - n
    return N_UNITS - n_test, n_test


def generate(seed: int, n: int | None = None, n_test: int | None = None, surface: str = "B",
             test_share: float = 0.1) -> tuple[Dataset, Truth]:
    """Replication ``seed`` of IHDP surface A or B (econml's loader), split into train and test by the seed."""
    if surface not in SURFACES:
        raise DataError(f"ihdp: surface={surface!r} is not allowed; surface must be one of {', '.join(SURFACES)}")
    n_train, n_test = _split_sizes(n, n_test, test_share)
    try:
        from econml.data import dgps
    except ImportError as err:
        raise DataError(f"ihdp: econml's IHDP loader cannot be imported ({err}); install econml") from err
    loader = dgps.ihdp_surface_A if surface == "A" else dgps.ihdp_surface_B
    Y, T, Z, true_te = loader(random_state=seed)
    if Z.shape != (N_UNITS, len(FEATURES) + 1):
        raise DataError(f"ihdp: econml's loader returned X of shape {Z.shape}, expected ({N_UNITS}, "
                        f"{len(FEATURES) + 1}); this econml version is not supported")
    X = pd.DataFrame(Z[:, 1:].astype(float), columns=FEATURES)
    T = np.asarray(T).astype(int)
    extra = {"surface": surface, "replication_seed": int(seed), "source": dgps._ihdp_sim_file,
             "propensity": "unknown: randomised trial with treated children of non-white mothers removed"}
    if surface == "A":
        modifiers, tau_fn = [], tau_surface_a
    else:
        beta, omega = _surface_b_coefficients(seed, Z, T)
        tau_fn = partial(tau_surface_b, beta=beta, omega=omega)
        # Guard against a future econml drawing β differently: then only the returned τ is trusted.
        if np.allclose(tau_fn(X), true_te, rtol=0, atol=1e-9):
            modifiers = [f for f, b in zip(FEATURES, beta[1:]) if b != 0]
            extra.update(beta=dict(zip(["intercept", *FEATURES], beta.tolist())), omega=omega)
        else:
            tau_fn = None
            modifiers = list(FEATURES)
            extra["tau_fn"] = "None: econml's coefficients could not be reproduced; every covariate may modify"
    units = np.random.default_rng(seed).permutation(N_UNITS)
    train, test = np.sort(units[n_test:]), np.sort(units[:n_test])
    dataset = Dataset(X_train=X.iloc[train].reset_index(drop=True), T_train=T[train],
                      Y_train=np.asarray(Y[train], dtype=float),
                      X_test=X.iloc[test].reset_index(drop=True), T_test=T[test],
                      Y_test=np.asarray(Y[test], dtype=float))
    extra.update(units_train=train, units_test=test)
    truth = Truth(tau_train=np.asarray(true_te[train], dtype=float),
                  tau_test=np.asarray(true_te[test], dtype=float),
                  propensity_train=np.full(n_train, np.nan), propensity_test=np.full(n_test, np.nan),
                  modifiers=modifiers, tau_fn=tau_fn, extra=extra)
    return dataset, truth
