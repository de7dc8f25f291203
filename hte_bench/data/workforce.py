"""The workforce-training DGP of seed notebook 003, on the log-wage scale where its tau is defined."""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from hte_bench.data.base import DataError, Dataset, Truth

MODIFIERS = ["education_years", "age", "industry_tech", "unemployment_months", "rural"]
# The notebook's analysis groups (declared here, analysed by hte_bench.evaluation.subgroups): education bands,
# tech industry, rural, age bands.
SUBGROUPS = [
    {"name": "education", "column": "education_years", "bins": [0, 12, 14, 16, 25],
     "labels": ["<HS", "HS/Some College", "Bachelor", "Graduate"]},
    {"name": "industry_tech", "column": "industry_tech"},
    {"name": "rural", "column": "rural"},
    {"name": "age", "column": "age", "bins": [20, 35, 50, 65]},
]
FEATURES = ["age", "education_years", "prior_wage", "unemployment_months", "industry_tech", "rural",
            "has_dependents"]


def tau(X: pd.DataFrame, heterogeneity: float = 1.0) -> np.ndarray:
    """True CATE (effect on log wage), clipped to [0, 0.25] as in the notebook (heterogeneity 1)."""
    varying = (- 0.01 * (X["education_years"] - 10)
               - 0.002 * (X["age"] - 35)
               + 0.05 * X["industry_tech"]
               + 0.003 * X["unemployment_months"]
               - 0.02 * X["rural"])
    return np.clip(0.08 + heterogeneity * varying, 0, 0.25).to_numpy(dtype=float)


def _extra_confounders(rs: np.random.RandomState, n: int, k: int, rho: float):
    """k confounders z1..zk with pairwise correlation rho (one common factor), and their take-up and wage terms.

    Weights decay as 1/j (a few strong, many weak ones) and are scaled so the terms have a fixed standard
    deviation whatever k: 0.5 on the log-odds of take-up, 0.1 on log wage (the noise is 0.15). Omitting
    them biases the ATE; adjusting for all of them is the high-dimensional problem.
    """
    factor = rs.normal(0, 1, (n, 1))
    Z = np.sqrt(rho) * factor + np.sqrt(1 - rho) * rs.normal(0, 1, (n, k))
    w = 1.0 / np.arange(1, k + 1)
    sd = np.sqrt(rho * w.sum() ** 2 + (1 - rho) * (w ** 2).sum())
    terms = Z @ (w / sd)
    return pd.DataFrame(Z, columns=[f"z{j}" for j in range(1, k + 1)]), 0.5 * terms, 0.1 * terms


def _covariates(rs: np.random.RandomState, n: int) -> pd.DataFrame:
    """The notebook's seven features, in its draw order."""
    return pd.DataFrame({
        "age": rs.normal(40, 12, n).clip(22, 65),
        "education_years": rs.normal(13, 3, n).clip(8, 20),
        "prior_wage": rs.lognormal(10.5, 0.4, n),
        "unemployment_months": rs.exponential(6, n).clip(0, 36),
        "industry_tech": rs.binomial(1, 0.25, n),
        "rural": rs.binomial(1, 0.30, n),
        "has_dependents": rs.binomial(1, 0.55, n),
    })


POPULATION_DRAWS = 500_000


@functools.lru_cache(maxsize=8)
def population_ate(heterogeneity: float = 1.0) -> float:
    """E[tau(X)] over the generator's covariate distribution: the mean of tau over 500,000 draws of X.

    tau is a clipped function of clipped and skewed features, so there is no closed form; this fixed Monte
    Carlo (its own RandomState, the same number in every process) has standard error
    sd(tau)/sqrt(5e5) ≈ 6e-5 (sd(tau) ≈ 0.044), under 1% of an ATE interval's half-width at n = 2000. It does not depend
    on noise, confounding or the extra confounders (drawn after X, independently of it).
    """
    rs = np.random.RandomState(20_241_125)
    return float(np.mean(tau(_covariates(rs, POPULATION_DRAWS), heterogeneity)))


def _draw(rs: np.random.RandomState, n: int, noise: float, confounding: float, heterogeneity: float,
          extra_confounders: int = 0, confounder_correlation: float = 0.5):
    # Draw order is the notebook's; confounding=1 reproduces it, 0 makes assignment ignore X. Extra
    # confounders are drawn only when asked, so extra_confounders=0 leaves the random stream untouched.
    X = _covariates(rs, n)
    index = -2 + confounding * (0.05 * (X["education_years"] - 13) - 0.02 * (X["age"] - 40)
                                + 0.1 * X["unemployment_months"] + 0.5 * X["industry_tech"])
    wage_term = 0.0
    if extra_confounders:
        Z, take_up, wage_term = _extra_confounders(rs, n, int(extra_confounders), float(confounder_correlation))
        X = pd.concat([X, Z], axis=1)
        index = index + confounding * take_up
    # The notebook's latent selection noise: part of the true assignment probability, unseen by estimators.
    propensity = (1 / (1 + np.exp(-(index + rs.normal(0, 0.5, n))))).to_numpy()
    T = rs.binomial(1, propensity)
    te = tau(X, heterogeneity)
    baseline = (10.2 + 0.08 * X["education_years"] + 0.01 * (X["age"] - 22)
                - 0.005 * X["unemployment_months"] + 0.15 * X["industry_tech"] - 0.08 * X["rural"])
    baseline = baseline + wage_term
    log_wage = (baseline + T * te + rs.normal(0, noise, n)).to_numpy()
    return X, T, log_wage, te, propensity, baseline.to_numpy()


def generate(seed: int, n: int = 2000, n_test: int = 1000, noise: float = 0.15,
             confounding: float = 1.0, heterogeneity: float = 1.0, extra_confounders: int = 0,
             confounder_correlation: float = 0.5) -> tuple[Dataset, Truth]:
    """Draw train then test sample from RandomState(seed); the outcome Y is the log wage.

    The notebook's doubly robust step used the wage level and reported an ATE of 6184; tau is an
    effect on log wage, so the observed outcome here is log wage. ``extra_confounders`` adds that many
    correlated features z1..zK driving both take-up and wage (0: the notebook's data, draw for draw).
    """
    if isinstance(extra_confounders, bool) or not isinstance(extra_confounders, int) or extra_confounders < 0:
        raise DataError(f"workforce: extra_confounders={extra_confounders!r} is not allowed; it must be an "
                        "integer ≥ 0")
    if not 0 <= float(confounder_correlation) < 1:
        raise DataError(f"workforce: confounder_correlation={confounder_correlation!r} is not allowed; it must be "
                        "in [0, 1)")
    rs = np.random.RandomState(seed)
    args = (noise, confounding, heterogeneity, int(extra_confounders), float(confounder_correlation))
    X, T, Y, te, p, mu0 = _draw(rs, n, *args)
    Xt, Tt, Yt, tet, pt, mu0t = _draw(rs, n_test, *args)
    dataset = Dataset(X_train=X, T_train=T, Y_train=Y, X_test=Xt, T_test=Tt, Y_test=Yt)
    truth = Truth(tau_train=te, tau_test=tet, propensity_train=p, propensity_test=pt,
                  modifiers=list(MODIFIERS) if heterogeneity else [],
                  tau_fn=functools.partial(tau, heterogeneity=heterogeneity),
                  ate_population=population_ate(float(heterogeneity)),
                  extra={"mu0_train": mu0, "mu0_test": mu0t, "subgroups": SUBGROUPS})
    return dataset, truth
