"""The seed's doubly robust (AIPW) nuisances, fitted once and shared by every analysis that needs DR scores.

econml's DRTester nuisance step gives cross-fitted outcome (one model per arm) and propensity predictions on
the train split and train-fitted predictions on the test split; econml's ``calculate_dr_outcomes`` turns them
into AIPW scores. The same ``DRNuisances`` feed the AIPW ATE and balance table (``subgroups``), the DRTester
evaluations and policy values (``validation``) and the best linear projection (``insights``).

Why DRTester rather than ``LinearDRLearner.ate_inference`` or DoubleML's ``DoubleMLIRM``: all three compute
the same cross-fitted AIPW mean with a score-based standard error, but LinearDRLearner keeps its per-unit
scores and fold assignment private and neither of the others scores a second (test) split with nuisances
fitted on the first, which the policy values and DRTester need; DoubleML would also add a dependency
(0.11 pulls plotly, seaborn and mypy at run time). The ATE inference on these scores is statsmodels'
``DescrStatsW`` (sd/sqrt(n), the AIPW influence-function SE, which is what LinearDRLearner without
features reports too).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from hte_bench.evaluation.metrics import as_1d

PROPENSITY_CLIP = (0.01, 0.99)  # inverse weights bounded at 100, as the seed notebook trimmed


def default_outcome_model(seed: int):
    """The default outcome regression of the DR scores: a seeded random forest."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=100, min_samples_leaf=5, random_state=seed)


def default_treatment_model(seed: int):
    """The default propensity model of the DR scores: standardised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # lbfgs is deterministic, so the seed is not needed; it is taken for a uniform signature.
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


@dataclass
class SplitNuisances:
    """Outcome-per-arm and propensity predictions of one split, never fitted on the units they predict."""

    T: np.ndarray
    Y: np.ndarray
    reg_preds: np.ndarray   # (n, 2): mu0_hat, mu1_hat
    prop_preds: np.ndarray  # (n, 2): 1 - e_hat, e_hat (clipped to PROPENSITY_CLIP)

    @property
    def e_hat(self) -> np.ndarray:
        return self.prop_preds[:, 1]

    def aipw(self) -> np.ndarray:
        """Standard AIPW scores mu1 - mu0 + T(Y - mu1)/e - (1 - T)(Y - mu0)/(1 - e), by econml's formula."""
        from econml.validate.utils import calculate_dr_outcomes

        return np.asarray(calculate_dr_outcomes(self.T, self.Y, self.reg_preds, self.prop_preds))[:, 0]

    def grf_scores(self, tau_hat) -> np.ndarray:
        """grf's DR scores with the estimator's tau_hat: tau_hat + (T - e)/(e(1 - e))·(Y - m - (T - e)·tau_hat)."""
        h = as_1d(tau_hat)
        e, (mu0, mu1) = self.e_hat, self.reg_preds.T
        m = e * mu1 + (1.0 - e) * mu0  # E[Y | X] from the per-arm fits; with tau_hat = mu1 - mu0 this is aipw()
        resid_t = self.T - e
        return h + resid_t / (e * (1.0 - e)) * (self.Y - m - resid_t * h)


@dataclass
class DRNuisances:
    """One seed's nuisance predictions: cross-fitted on the train split, train-fitted on the test split."""

    train: SplitNuisances
    test: SplitNuisances
    n_folds: int
    models: str  # what was fitted, for notes and tables


def tester_class():
    """econml's DRTester, able to record its nuisance predictions once and replay them for any CATE model."""
    from econml.validate import DRTester

    class SharedNuisanceTester(DRTester):
        replay: Optional[DRNuisances] = None

        def fit_nuisance_cv(self, X, D, y):
            if self.replay is not None:
                return self.replay.train.reg_preds, self.replay.train.prop_preds
            reg, prop = super().fit_nuisance_cv(X, D, y)
            return reg, np.clip(prop, *PROPENSITY_CLIP)

        def fit_nuisance_train(self, Xtrain, Dtrain, ytrain, Xval):
            if self.replay is not None:
                return self.replay.test.reg_preds, self.replay.test.prop_preds
            reg, prop = super().fit_nuisance_train(Xtrain, Dtrain, ytrain, Xval)
            return reg, np.clip(prop, *PROPENSITY_CLIP)

    return SharedNuisanceTester


def dr_arrays(dataset) -> dict:
    """The numpy arrays DRTester.fit_nuisance takes (X as float matrices, T as ints)."""
    return {"Xval": dataset.X_test.to_numpy(dtype=float), "Dval": np.asarray(dataset.T_test).ravel().astype(int),
            "yval": as_1d(dataset.Y_test), "Xtrain": dataset.X_train.to_numpy(dtype=float),
            "Dtrain": np.asarray(dataset.T_train).ravel().astype(int), "ytrain": as_1d(dataset.Y_train)}


def fit_dr_nuisances(dataset, seed: int, n_folds: int = 2, outcome_model=None, treatment_model=None) -> DRNuisances:
    """Fit the seed's DR nuisances once with econml's DRTester (cross-fitted on train, train-fitted for test)."""
    return _fit_arrays(*_prepared(dataset, seed, n_folds, outcome_model, treatment_model))


def cached_dr_nuisances(dataset, seed: int, n_folds: int = 2, outcome_model=None, treatment_model=None,
                        location: Optional[str] = None) -> tuple[DRNuisances, bool]:
    """The seed's DR nuisances from the on-disk cache at ``location`` (joblib.Memory), fitted and stored on
    a miss; returns them and whether they came from the cache. ``location=None`` fits without caching.

    The key is what the fit depends on and nothing else: the observed arrays of both splits, the seed, the
    number of folds and the unfitted models (class and parameters), plus this module's fitting code (joblib
    drops entries whose function changed). So a sweep's estimators share one fit per (data, seed) across
    processes and reruns; the cached arrays are pickled, so a hit is bit-identical to a fresh fit.
    """
    args = _prepared(dataset, seed, n_folds, outcome_model, treatment_model)
    if location is None:
        return _fit_arrays(*args), False
    from joblib import Memory

    func = Memory(location, verbose=0).cache(_fit_arrays)
    hit = func.check_call_in_cache(*args)
    return func(*args), hit


def _prepared(dataset, seed, n_folds, outcome_model, treatment_model) -> tuple:
    """The arguments of ``_fit_arrays``: numpy arrays and unfitted models, refused when an arm is too small."""
    from sklearn.base import clone

    om = clone(default_outcome_model(seed) if outcome_model is None else outcome_model)
    tm = clone(default_treatment_model(seed) if treatment_model is None else treatment_model)
    arrays = dr_arrays(dataset)
    for split, key in (("train", "Dtrain"), ("test", "Dval")):
        arms, counts = np.unique(arrays[key], return_counts=True)
        if len(arms) < 2 or counts.min() < 2 * n_folds:
            raise ValueError(f"DR scores: the {split} split has arm counts {dict(zip(arms.tolist(), counts.tolist()))}; "
                             f"at least {2 * n_folds} units per arm are needed")
    return arrays, int(seed), int(n_folds), om, tm


def _fit_arrays(arrays: dict, seed: int, n_folds: int, om, tm) -> DRNuisances:
    """DRTester's nuisance step on prepared arrays, its predictions recorded (the cached unit of work)."""
    recorded: dict[str, tuple] = {}

    class Recorder(tester_class()):
        def fit_nuisance_cv(self, X, D, y):
            recorded["train"] = super().fit_nuisance_cv(X, D, y)
            return recorded["train"]

        def fit_nuisance_train(self, Xtrain, Dtrain, ytrain, Xval):
            recorded["test"] = super().fit_nuisance_train(Xtrain, Dtrain, ytrain, Xval)
            return recorded["test"]

    tester = Recorder(model_regression=om, model_propensity=tm, cate=None, cv=n_folds)
    tester.get_cv_splitter(random_state=seed)  # its folds are seeded with 123 unless set here
    tester.fit_nuisance(**arrays)
    parts = {split: SplitNuisances(T=arrays[d], Y=arrays[y], reg_preds=np.asarray(recorded[split][0], dtype=float),
                                   prop_preds=np.asarray(recorded[split][1], dtype=float))
             for split, d, y in (("train", "Dtrain", "ytrain"), ("test", "Dval", "yval"))}
    return DRNuisances(train=parts["train"], test=parts["test"], n_folds=n_folds,
                       models=f"outcome {type(om).__name__} per arm, propensity {_name(tm)}, {n_folds}-fold "
                              f"cross-fitting on train, train-fitted for test (econml DRTester)")


def _name(model) -> str:
    """A model's class name, the last step's for a pipeline."""
    steps = getattr(model, "steps", None)
    return type(steps[-1][1]).__name__ if steps else type(model).__name__
