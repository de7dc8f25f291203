"""Seed worker processes started early: what they import, and when they are not started."""
import pytest

from conftest import LEAN, SMALL, compose
from hte_bench import backends


@pytest.fixture(autouse=True)
def _first_job(monkeypatch):
    """Each test is a process's first job (warm_up starts workers once per process)."""
    monkeypatch.setattr(backends, "_WARMED", False)


def test_workers_import_the_estimators_libraries_and_those_of_the_first_seeds_analyses_and_figures():
    ols = backends.first_seed_imports(compose(["estimator=interaction_ols"]), seed=0)
    assert {"hte_bench.estimators.ols", "statsmodels.formula.api", "econml.validate", "matplotlib.pyplot"} <= set(ols)
    forest = backends.first_seed_imports(compose(["estimator=causal_forest_dml"]), seed=0)
    assert {"econml.dml", "sklearn.ensemble", "hte_bench.estimators.econml_adapter"} <= set(forest)
    # Analyses and figures switched off, or past the first seeds: their libraries are not loaded.
    lean = set(backends.first_seed_imports(compose(["estimator=interaction_ols", *LEAN]), seed=0))
    assert not lean & {"econml.validate", "econml.cate_interpreter", "matplotlib.pyplot"}
    late = set(backends.first_seed_imports(compose(["estimator=interaction_ols", "n_seeds=20"]), seed=10))
    assert "statsmodels.formula.api" in late and "matplotlib.pyplot" not in late


@pytest.mark.parametrize("overrides", [["n_jobs=1"], ["n_seeds=1", "n_jobs=2"], ["joblib_backend=ray", "n_jobs=2"]])
def test_no_workers_are_started_where_seeds_do_not_run_in_local_processes(overrides):
    cfg = compose(["estimator=zero_effect", *SMALL, *overrides])
    assert backends.warm_up(cfg, [int(s) for s in (cfg.seeds or range(cfg.n_seeds))]) is None


def test_workers_are_started_once_per_process_and_a_stopped_warm_up_is_harmless():
    cfg = compose(["estimator=zero_effect", *LEAN, "n_jobs=2", "n_seeds=2"])
    warm = backends.warm_up(cfg, [0, 1])
    assert warm is not None and backends.warm_up(cfg, [0, 1]) is None  # a sweep's later jobs reuse the pool
    backends.stop_warm_up(warm)
    backends.stop_warm_up(None)
