"""The hte_optuna Hydra sweeper (hydra_plugins/hte_bench_optuna_sweeper): search-space grammar, and real
sweeps of a tiny Hydra app (``python app.py``) and of hte-bench itself, both run as their processes would run
them but in the test process (tests/in_process.py)."""
from __future__ import annotations

import math
import os
import re
import subprocess
import textwrap
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from conftest import LEAN
from hydra_plugins.hte_bench_optuna_sweeper._impl import (
    IDENTITY,
    OptunaSweeperImpl,
    SweeperConfigError,
    check_identity,
    flatten_params,
    format_value,
    objective_value,
    params_to_overrides,
    parse_search_space,
    refuse_condition_knobs,
    resolve_direction,
)

REPO = Path(__file__).resolve().parent.parent
HPARAMS = REPO / "conf" / "hparams_search"


HS = "hparams_search"  # listed in conf/config.yaml defaults, so no "+" is needed


# ------------------------------------------------------------------------------------------------
# (a) search-space grammar → Optuna distributions


@pytest.mark.parametrize(
    "override, expected",
    [
        ("x=choice(5, 10, 20, 40)", CategoricalDistribution([5, 10, 20, 40])),
        ("x=choice(true, false)", CategoricalDistribution([True, False])),
        ("x=a,b,c", CategoricalDistribution(["a", "b", "c"])),
        ("outcome_model=choice(random_forest, lasso)", CategoricalDistribution(["random_forest", "lasso"])),
        # range: stop excluded, as in Python and Hydra's basic sweeper
        ("x=range(1, 10)", IntDistribution(1, 9)),
        ("x=range(1, 10, 3)", IntDistribution(1, 7, step=3)),
        ("x=range(10, 0, -2)", IntDistribution(2, 10, step=2)),
        ("x=range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
        ("x=shuffle(range(1, 4))", CategoricalDistribution([1, 2, 3])),
        ("x=tag(log, range(1, 100))", IntDistribution(1, 99, log=True)),
        ("x=interval(0.2, 0.5)", FloatDistribution(0.2, 0.5)),
        ("x=interval(1, 100)", FloatDistribution(1.0, 100.0)),  # Hydra makes interval bounds floats
        ("x=int(interval(1, 100))", IntDistribution(1, 100)),
        ("x=tag(int, interval(1, 100))", IntDistribution(1, 100)),
        ("x=tag(log, interval(0.0001, 1))", FloatDistribution(0.0001, 1.0, log=True)),
        ("x=tag(log, int(interval(1, 1024)))", IntDistribution(1, 1024, log=True)),
        ("x=tag(log, int, interval(1, 1024))", IntDistribution(1, 1024, log=True)),
    ],
)
def test_each_grammar_form_becomes_the_expected_distribution(override, expected):
    space = parse_search_space([override])
    name = override.split("=", 1)[0]
    assert space.distributions == {name: expected}
    assert space.fixed == []


@pytest.mark.parametrize("override", ["x=5", "+x=hello", "++estimator.model.honest=true", "~x", "x=[1,2]"])
def test_a_single_value_is_a_fixed_override_passed_unchanged(override):
    space = parse_search_space([override])
    assert space.distributions == {}
    assert space.fixed == [override]
    assert space.overrides({}) == [override]


def test_later_overrides_win_and_trials_get_key_equals_value():
    # hydra.sweeper.params first, the command line after: the command line wins, both ways.
    space = parse_search_space(["x=choice(1,2)", "y=3", "++z=interval(0,1)", "w=a,b", "x=5", "y=interval(0,1)"])
    assert set(space.distributions) == {"y", "z", "w"}
    assert space.fixed == ["x=5"]
    assert space.overrides({"y": 0.25, "z": 0.5, "w": "b"}) == ["++z=0.5", "w=b", "x=5", "y=0.25"]


def test_values_are_written_back_in_override_grammar():
    assert [format_value(v) for v in (True, False, None, 3, 0.1, 1e-05, "HC1", [1, "a"])] == [
        "true", "false", "null", "3", "0.1", "1e-05", "HC1", "[1,a]"]
    # a quoted choice keeps what makes it parse again
    space = parse_search_space(["x=choice('a b', c)"])
    (dist,) = space.distributions.values()
    assert parse_search_space([space.overrides({"x": dist.choices[0]})[0]]).fixed == ["x=a\\ b"]


def test_params_from_yaml_and_from_the_command_line_flatten_to_dotted_keys():
    # YAML keys with dots stay flat; +hydra.sweeper.params.a.b=... on the command line nests.
    params = OmegaConf.create({"estimator.model.max_depth": "choice(5, 10)", "estimator": {"cov_type": "HC1,HC3"},
                               "flag": True, "n": 3})
    assert flatten_params(params) == {"estimator.model.max_depth": "choice(5, 10)",
                                      "estimator.cov_type": "HC1,HC3", "flag": True, "n": 3}
    assert params_to_overrides(params) == ["estimator.model.max_depth=choice(5, 10)", "estimator.cov_type=HC1,HC3",
                                           "flag=true", "n=3"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("x=tag(lg, interval(0, 1))", "unknown tag"),
        ("x=tag(int, interval(0.5, 2))", "integer bounds"),
        ("x=tag(log, range(0.1, 1, 0.1))", "log scale"),
        ("x=range(5, 1)", "empty"),
        ("x=tag(log, choice(1, 2))", "not to a choice"),
    ],
)
def test_unusable_search_spaces_are_refused_with_the_key(override, message):
    with pytest.raises(SweeperConfigError, match=message) as err:
        parse_search_space([override])
    assert str(err.value).startswith("x:")


def _job(value=None, error=None) -> JobReturn:
    ret = JobReturn(overrides=["x=1"])
    if error is None:
        ret.status, ret.return_value = JobStatus.COMPLETED, value
    else:
        ret.status, ret.return_value = JobStatus.FAILED, error
    return ret


def test_objective_value_accepts_finite_numbers_only():
    assert objective_value(_job(0.5)) == (0.5, None)
    assert objective_value(_job(3)) == (3.0, None)
    for bad, why in [(None, "None"), (float("nan"), "nan"), (float("inf"), "inf"), ("abc", "not a number")]:
        value, reason = objective_value(_job(bad))
        assert value is None and why in reason
    value, reason = objective_value(_job(error=RuntimeError("boom")))
    assert value is None and reason == "raised RuntimeError: boom"


def test_settings_are_checked_and_the_sampler_gets_the_seed():
    with pytest.raises(SweeperConfigError, match="direction"):
        OptunaSweeperImpl(direction="up")
    with pytest.raises(SweeperConfigError, match="n_jobs"):
        OptunaSweeperImpl(n_jobs=0)
    sampler, how = OptunaSweeperImpl().make_sampler(7)
    assert isinstance(sampler, optuna.samplers.TPESampler) and how == "seed=7"
    cfg = OmegaConf.create({"_target_": "optuna.samplers.RandomSampler"})
    draws = []
    for _ in range(2):
        sampler, how = OptunaSweeperImpl(sampler=cfg).make_sampler(7)
        assert isinstance(sampler, optuna.samplers.RandomSampler) and how == "seed=7"
        study = optuna.create_study(sampler=sampler)
        draws.append([study.ask({"x": FloatDistribution(0, 1)}).params["x"] for _ in range(3)])
    assert draws[0] == draws[1]  # the seed reached the configured sampler
    _, how = OptunaSweeperImpl(sampler=OmegaConf.create({**cfg, "seed": 3})).make_sampler(7)
    assert how == "seed=3 from its config"


def test_the_direction_follows_the_objective_and_a_contradicting_one_is_refused():
    # Optuna minimising rscore_mean (higher is better) called the worst configuration its best.
    objective = OmegaConf.create({"optimized_metric": "rscore_mean", "metric_modules": []})
    assert resolve_direction(None, objective) == "maximize"
    assert resolve_direction("maximize", objective) == "maximize"
    with pytest.raises(SweeperConfigError, match="optimized_metric=rscore_mean is to maximize .* leave "
                                                 "hydra.sweeper.direction out"):
        resolve_direction("minimize", objective)
    assert resolve_direction(None, OmegaConf.create({"optimized_metric": "cate_rmse_test_mean"})) == "minimize"
    assert resolve_direction(None, OmegaConf.create({"x": 1})) == "minimize"  # another app: as given, else minimize
    assert resolve_direction("maximize", OmegaConf.create({"x": 1})) == "maximize"


@pytest.mark.parametrize("override", ["data.noise=0.5,2.0", "data=choice(engagement, workforce)", "n_seeds=3,5",
                                      "alpha=interval(0.05, 0.1)"])
def test_a_search_does_not_vary_the_data_or_the_seeds(override):
    # Optuna would pool the conditions and call the easiest data the best configuration.
    with pytest.raises(SweeperConfigError, match=f"{override.split('=')[0]} is searched .* one data condition"):
        refuse_condition_knobs(parse_search_space(["estimator.cov_type=choice(HC1,HC3)", override]))
    refuse_condition_knobs(parse_search_space(["estimator.cov_type=choice(HC1,HC3)", "data.noise=2.0"]))  # fixed: fine


def test_a_stored_study_takes_no_trials_on_other_data_seeds_or_settings():
    study = optuna.create_study()
    mine = {"condition_hash": "a" * 12, "condition": "engagement n=600", "seeds": [0, 1, 2],
            "optimized_metric": "cate_rmse_test_mean", "alpha": 0.05, "settings": {"estimator.model.n_estimators": 40}}
    check_identity(study, mine, "sqlite:///x.db")
    assert study.user_attrs[IDENTITY] == mine
    trial = study.ask({"x": FloatDistribution(0, 1)})
    study.tell(trial, 1.0)
    check_identity(study, dict(mine), "sqlite:///x.db")  # the same search resumes
    other = {**mine, "condition_hash": "b" * 12, "condition": "engagement n=600 noise=3.0"}
    with pytest.raises(SweeperConfigError, match="holds trials on condition 'engagement n=600'; this search is on "
                                                 "condition 'engagement n=600 noise=3.0'.*own hydra.sweeper.study_name"):
        check_identity(study, other, "sqlite:///x.db")
    with pytest.raises(SweeperConfigError, match="holds trials on seeds 0-2; this search is on seeds 0-4"):
        check_identity(study, {**mine, "seeds": [0, 1, 2, 3, 4]}, "sqlite:///x.db")
    with pytest.raises(SweeperConfigError, match="on estimator.model.n_estimators=40; this search is on "
                                                 "estimator.model.n_estimators=80"):
        check_identity(study, {**mine, "settings": {"estimator.model.n_estimators": 80}}, "sqlite:///x.db")
    # A searched parameter fixed (outcome_model=lasso on the command line): said as such, not as its settings.
    searched = {**mine, "searched": ["estimator.model.cv", "outcome_model"]}
    renamed = optuna.create_study()
    check_identity(renamed, searched, None)
    renamed.tell(renamed.ask({"x": FloatDistribution(0, 1)}), 1.0)
    with pytest.raises(SweeperConfigError, match="searched the parameters estimator.model.cv, outcome_model; this "
                                                 "search searches the parameters estimator.model.cv:"):
        check_identity(renamed, {**searched, "searched": ["estimator.model.cv"], "settings": {"outcome_model": "x"}},
                       None)
    # Only FAILED trials (a typo, since fixed): nothing to compare, the study takes the new settings.
    failed = optuna.create_study()
    failed.tell(failed.ask({"x": FloatDistribution(0, 1)}), state=TrialState.FAIL)
    check_identity(failed, mine, None)
    check_identity(failed, other, None)
    assert failed.user_attrs[IDENTITY] == other


# ------------------------------------------------------------------------------------------------
# the hparams_search configs


@pytest.mark.parametrize("path", sorted(HPARAMS.glob("*.yaml")), ids=lambda p: p.stem)
def test_hparams_search_files_put_the_package_header_first(path):
    # Hydra reads "# @package" only before the first non-header line: a comment above it would
    # silently nest the whole file under hparams_search.
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines[0] == "# @package _global_"
    assert re.match(rf"# hte-bench -m \+?hparams_search={path.stem}\b", lines[1])


@pytest.mark.parametrize("name, estimator", [("causal_forest", "causal_forest_dml"), ("linear_dml", "linear_dml")])
def test_hparams_search_composes_to_the_optuna_sweeper(name, estimator):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"{HS}={name}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "hte_optuna"
    assert cfg.hydra.runtime.choices.estimator == estimator
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("HteOptunaSweeper")
    assert sweeper.storage == "sqlite:///mlruns/optuna.db"  # never MLflow's mlruns/mlflow.db
    assert sweeper.study_name == f"{name}_engagement"
    assert cfg.optimized_metric == "cate_rmse_test_mean" and "hparams_search" not in cfg
    parse_search_space([f"{k}={v}" for k, v in sweeper.params.items()])  # every entry parses


# ------------------------------------------------------------------------------------------------
# (b)-(d) a tiny Hydra app

APP = '''
import math
import hydra

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def app(cfg):
    if cfg.x == 3:
        raise RuntimeError("x=3 is broken")
    if cfg.x == 2:
        return float("nan")
    return (cfg.x - 1) ** 2 + cfg.y + cfg.offset

if __name__ == "__main__":
    app()
'''

CONFIG = '''
defaults:
  - override hydra/sweeper: hte_optuna
  - _self_
x: 0
y: 0.0
offset: 0
hydra:
  sweeper:
    n_trials: 6
    seed: 0
    params:
      x: range(-2, 2)
'''


def _sweep_app(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python app.py -m *args`` from tmp_path, in this process (tests/in_process.py): the sweeper is the
    subject, not the app's start-up (a process spends ~3 s of CPU importing Hydra and Optuna)."""
    from in_process import run_file_here

    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "config.yaml").write_text(textwrap.dedent(CONFIG))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "MLFLOW_"))}
    return run_file_here(tmp_path / "app.py", ["-m", *args], cwd=tmp_path, env=env)


def _job_dirs(sweep_dir: Path) -> list[str]:
    return sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())


def test_a_sweep_runs_n_trials_and_writes_the_best(tmp_path):
    # x from hydra.sweeper.params, y searched from the command line, offset passed to every trial
    proc = _sweep_app(tmp_path, "y=interval(0, 1)", "offset=10", "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert res.name == "hte_optuna" and res.study_name == "app" and res.direction == "minimize"
    assert res.n_trials.total == 6 and res.n_trials.complete == 6 and res.n_trials.failed == 0
    assert set(res.best_params) == {"x", "y"} and res.best_params.x in range(-2, 2)
    assert 0 <= res.best_params.y <= 1
    assert res.best_value == pytest.approx((res.best_params.x - 1) ** 2 + res.best_params.y + 10)
    assert "offset=10" in res.best_overrides
    assert _job_dirs(tmp_path / "sweep") == [str(i) for i in range(6)]
    # one line per finished trial
    out = proc.stdout + proc.stderr
    assert all(f"trial {i}: value=" in out for i in range(6)) and "best so far" in out


def test_a_stored_study_resumes_with_the_missing_trials_only(tmp_path):
    storage = f"sqlite:///{tmp_path / 'db' / 'optuna.db'}"
    common = ["y=interval(0, 1)", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=resume"]
    first = _sweep_app(tmp_path, *common, "hydra.sweeper.n_trials=4", "hydra.sweep.dir=run1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = _sweep_app(tmp_path, *common, "hydra.sweeper.n_trials=6", "hydra.sweep.dir=run2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert _job_dirs(tmp_path / "run1") == ["0", "1", "2", "3"]
    assert _job_dirs(tmp_path / "run2") == ["0", "1"]  # only the 2 missing trials were launched
    study = optuna.load_study(study_name="resume", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    # the resumed sampler does not replay the first run's draws
    ys = [t.params["y"] for t in study.trials]
    assert len(set(ys)) == 6
    res = OmegaConf.load(tmp_path / "run2" / "optimization_results.yaml")
    assert res.n_trials.total == 6 and res.n_trials.this_run == 2
    assert res.best_value == min(t.value for t in study.trials)


def test_a_failing_or_nan_trial_is_failed_and_the_sweep_goes_on(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    proc = _sweep_app(tmp_path, "x=choice(1, 2, 3)", "hydra.sweeper.n_trials=8", f"hydra.sweeper.storage={storage}",
                      "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="app", storage=storage)
    assert len(study.trials) == 8
    by_x = {x: [t for t in study.trials if t.params["x"] == x] for x in (1, 2, 3)}
    assert by_x[3] and by_x[2] and by_x[1], "the seed should reach every choice"
    assert all(t.state == TrialState.FAIL and "RuntimeError: x=3 is broken" in t.user_attrs["fail_reason"]
               for t in by_x[3])
    assert all(t.state == TrialState.FAIL and "nan" in t.user_attrs["fail_reason"] for t in by_x[2])
    assert all(t.state == TrialState.COMPLETE for t in by_x[1])
    res = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert res.n_trials.failed == len(by_x[2]) + len(by_x[3]) and res.n_trials.complete == len(by_x[1])
    assert res.best_params.x == 1
    assert "FAILED (raised RuntimeError: x=3 is broken)" in proc.stdout + proc.stderr


def test_failed_trials_do_not_count_toward_n_trials(tmp_path):
    # Trials that failed on a mistake (fixed since) are run again on resume, not counted as done.
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    common = ["x=choice(0, 1)", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=2"]
    first = _sweep_app(tmp_path, *common, "offset=oops", "hydra.sweep.dir=run1")  # a number plus 'oops' raises
    assert first.returncode == 0, first.stderr[-3000:]
    second = _sweep_app(tmp_path, *common, "offset=0", "hydra.sweep.dir=run2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 trials already completed (2 failed before: not counted" in second.stdout + second.stderr
    study = optuna.load_study(study_name="app", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2
    # Other choices for x in the same study: Optuna cannot change them; one line, before any trial.
    third = _sweep_app(tmp_path, "x=choice(0, 1, 5)", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=3",
                       "hydra.sweep.dir=run3")
    assert third.returncode != 0 and "study 'app' searched x over choice(0, 1); this search: choice(0, 1, 5)" in \
        third.stderr and "give this search its own hydra.sweeper.study_name" in third.stderr
    assert len(optuna.load_study(study_name="app", storage=storage).trials) == 4


def test_a_search_space_that_does_not_compose_stops_before_any_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    proc = _sweep_app(tmp_path, "z=choice(1, 2)", f"hydra.sweeper.storage={storage}", "hydra.sweep.dir=sweep")
    assert proc.returncode != 0
    assert "does not compose" in proc.stderr and "+ or ++" in proc.stderr
    assert not (tmp_path / "sweep").exists()
    assert optuna.study.get_all_study_names(storage) == []


# ------------------------------------------------------------------------------------------------
# (e), (f) hte-bench itself


def _hte_bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """hte-bench's console entry point in this process (tests/in_process.py): the sweeper is the subject."""
    from in_process import run_here

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "MLFLOW_"))}
    return run_here(args, cwd, env=env)


def _results(cwd: Path):
    found = list((cwd / "mlruns" / "hydra").glob("multirun_*/optimization_results.yaml"))
    assert len(found) == 1, found
    return OmegaConf.load(found[0])


# hte-bench runs below use conftest.LEAN (small, serial, analyses and figures off): they test the sweeper.


def test_hte_bench_sweeps_with_optuna_one_parent_run_per_trial(tmp_path, migrated_mlruns):
    uri = migrated_mlruns(tmp_path)
    proc = _hte_bench(["-m", "hydra/sweeper=hte_optuna", "hydra.sweeper.n_trials=3",
                       "hydra.sweeper.seed=2",  # its first three draws are three different cov_types
                       "estimator=interaction_ols",
                       '+hydra.sweeper.params.estimator.cov_type="choice(nonrobust,HC1,HC3)"',
                       "n_seeds=1", f"tracking.uri={uri}", *LEAN],
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("hte-bench")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("hte_bench.kind") == "config"]
    assert len(parents) == 3 and all(p.info.status == "FINISHED" for p in parents)
    assert {p.data.params["estimator.cov_type"] for p in parents} == {"nonrobust", "HC1", "HC3"}
    # Runs named by hash say what tells them apart: the summary's settings column, each description.
    summary = proc.stdout[proc.stdout.index("sweep summary"):]
    assert "settings" in summary and all(f"estimator.cov_type={c}" in summary for c in ("nonrobust", "HC1", "HC3"))
    assert all(f"with `estimator.cov_type={p.data.params['estimator.cov_type']}`" in p.data.tags["mlflow.note.content"]
               for p in parents)
    res = _results(tmp_path)
    assert res.study_name == "hte-bench" and res.n_trials.complete == 3
    assert res.best_value == pytest.approx(min(p.data.metrics["cate_rmse_test_mean"] for p in parents))
    assert not (tmp_path / "mlruns" / "optuna.db").exists()  # no storage configured: in memory


def test_hparams_search_causal_forest_runs_and_stores_its_study_beside_mlflow(tmp_path, migrated_mlruns):
    migrated_mlruns(tmp_path)
    proc = _hte_bench(["-m", f"{HS}=causal_forest", "hydra.sweeper.n_trials=2",
                       "estimator.model.n_estimators=40", "++outcome_model.n_estimators=20", "n_seeds=1",
                       *LEAN], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _results(tmp_path)
    assert res.study_name == "causal_forest_engagement" and res.n_trials.complete == 2
    assert set(res.best_params) == {"estimator.model.min_samples_leaf", "estimator.model.max_depth",
                                    "estimator.model.max_samples", "estimator.model.honest"}
    assert math.isfinite(res.best_value)
    # two SQLite files side by side: MLflow's and Optuna's (they cannot share one)
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    study = optuna.load_study(study_name="causal_forest_engagement",
                              storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")
    assert len(study.trials) == 2 and study.best_value == res.best_value
    assert res.condition == "engagement n=300 n_test=200" and list(res.seeds) == [0]
    # The same study on other data: refused in one line before any trial, nothing left behind.
    again = _hte_bench(["-m", f"{HS}=causal_forest", "hydra.sweeper.n_trials=3", "estimator.model.n_estimators=40",
                        "++outcome_model.n_estimators=20", "n_seeds=1", *LEAN, "data.noise=3.0"], cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        line for line in again.stderr.strip().splitlines() if "holds trials on condition 'engagement n=300 n_test=200'" in line]
    assert len(optuna.load_study(study_name="causal_forest_engagement", storage=study._storage).trials) == 2
    assert len(list((tmp_path / "mlruns" / "hydra").glob("multirun_*"))) == 1
    # The same search written otherwise (the estimator its file already picks, ++ on an existing key) is the same
    # study: it resumes, with nothing left to run.
    same = _hte_bench(["-m", f"{HS}=causal_forest", "hydra.sweeper.n_trials=2", "estimator=causal_forest_dml",
                       "++estimator.model.n_estimators=40", "++outcome_model.n_estimators=20", "n_seeds=1", *LEAN],
                      cwd=tmp_path)
    assert same.returncode == 0 and "2 trials already completed" in same.stdout + same.stderr, same.stderr[-2000:]


@pytest.mark.slow
def test_hparams_search_linear_dml_chooses_nuisance_groups_in_parallel_batches(tmp_path):
    # group choices (outcome_model=lasso, ...) through the joblib launcher, two trials per batch
    proc = _hte_bench(["-m", f"{HS}=linear_dml", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                       "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "n_seeds=1", "data.n=300",
                       "data.n_test=200", "importance_repeats=1", "tracking.plots=false"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _results(tmp_path)
    assert res.n_trials.complete == 4
    assert res.best_params.outcome_model in {"random_forest", "gradient_boosting", "lasso"}
    study = optuna.load_study(study_name="linear_dml_engagement",
                              storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")
    assert sorted(t.user_attrs["hydra_job_num"] for t in study.trials) == [0, 1, 2, 3]


def test_a_search_for_a_truth_metric_on_a_csv_without_truth_is_refused_before_it_starts(tmp_path):
    # Every trial would fit and then return NaN (FAIL): the search ended with no trial completed, exit 0.
    from hte_bench.data import engagement

    dataset, _ = engagement.generate(seed=0, n=200, n_test=10)
    dataset.X_train.assign(t=dataset.T_train, y=dataset.Y_train).to_csv(tmp_path / "d.csv", index=False)
    proc = _hte_bench(["-m", f"{HS}=linear_dml", "data=csv", "data.path=d.csv", "data.outcome=y", "data.treatment=t"],
                      tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "hte-bench: error: optimized_metric=cate_rmse_test_mean needs the true effect, which this CSV does not give "
        "(no data.tau): search on a truth-free score, e.g. optimized_metric=rscore_mean")
    assert not (tmp_path / "mlruns").exists()
