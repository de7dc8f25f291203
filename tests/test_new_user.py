"""Every mistake a new user makes (issue 10) gets one line, fast, a non-zero exit, and leaves nothing behind.

Each case runs the real console script from a fresh folder, as a user types it: one case per layer that
refuses (Hydra's composition, the store, the first seed's fit, a sweep, a comparison script) as a process
of its own, the others through the same console entry point in the test process (tests/in_process.py:
~6 s of start-up less each), with a migrated store already in their folder when they are hte-bench's — so
a refusal must leave no run in an existing store either. The table runs once (module fixture); each test
then checks one case: exactly one non-empty stderr line, starting with the script's name and naming the fix;
exit code ≠ 0; no runs in the store; no folders left.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import TEST_CONF, _copy_template, all_runs, cli_env, client, free_port
from hte_bench.cli.run import group_options
from in_process import run_here

# "Within seconds" is checked on the CPU time of each refusal (measured 0.4 s for a Hydra typo to ~8 s for
# one that imports econml), which other jobs on a shared machine do not inflate; the wall-clock bound only
# catches hangs, such as the retrying client that waited minutes for a dead server.
CPU_LIMIT = 20
WALL_LIMIT = 300
TINY = ["n_seeds=1", "data.n=300", "data.n_test=100", "tracking.plots=false", "analyses.truth_free=false",
        "analyses.subgroups=false"]
MY_MODULE = '''
import numpy as np
import pandas as pd
from hte_bench.data import Dataset, Truth


def generate(seed, n=1000, n_test=1000):
    rng = np.random.default_rng(seed)

    def draw(m):
        X = pd.DataFrame({"x1": rng.normal(size=m), "x2": rng.integers(0, 5, size=m)})
        T = rng.binomial(1, 0.5, m)
        tau = 1 + X["x1"].to_numpy()
        return X, T, X["x2"].to_numpy() + T * tau + rng.normal(size=m), tau

    Xa, Ta, Ya, ta = draw(n)
    Xb, Tb, Yb, tb = draw(n_test)
    return (Dataset(Xa, Ta, Ya, Xb, Tb, Yb),
            Truth(ta, tb, np.full(n, 0.5), np.full(n_test, 0.5), modifiers=["x1"],
                  tau_fn=lambda X: 1 + X["x1"].to_numpy()))
'''


def _local_conf(folder: Path) -> None:
    """A user's own conf/: a promoted-style experiment and an estimator of their own."""
    (folder / "conf" / "experiment").mkdir(parents=True)
    (folder / "conf" / "experiment" / "x.yaml").write_text("# @package _global_\nn_seeds: 1\n")
    (folder / "conf" / "estimator").mkdir()
    shutil.copy(TEST_CONF / "estimator" / "cf_small.yaml", folder / "conf" / "estimator" / "cf_small.yaml")
    (folder / "conf" / "estimator" / "my_ols.yaml").write_text(
        "_target_: hte_bench.estimators.ols.InteractionOLS\ninteractions: false\n")


def _csv(folder: Path, treatment=(0, 1)) -> None:
    rows = [f"{i % 7},{treatment[i % len(treatment)]},{i % 3}" for i in range(60)]
    (folder / "my.csv").write_text("a,t,y\n" + "\n".join(rows) + "\n")


DEAD_PORT = free_port()
SETUPS = {
    None: lambda folder: None,
    "conf": _local_conf,
    "module": lambda folder: (folder / "my_module.py").write_text(MY_MODULE),
    "csv": _csv,
    "csv_one_arm": lambda folder: _csv(folder, treatment=(0,)),
    # A user's own estimator file with a YAML slip (an over-indented line).
    # A user's metric module whose MetricSpec misspells its function.
    "metric_typo": lambda folder: (folder / "typo_metrics.py").write_text(
        "from hte_bench.evaluation.registry import MetricSpec, register\n"
        "def ate_abs_error(truth, estimate):\n    return abs(estimate.ate_hat - truth.tau_train.mean())\n"
        "register(MetricSpec('typo_ate_abs_error', goal='lower', needs_truth=True, split='train', description='',"
        " fn='typo_metrics.ate_abs_eror'))\n"),
    # A user's metric function with the wrong signature.
    "metric_sig": lambda folder: (folder / "sig_metrics.py").write_text(
        "from hte_bench.evaluation.registry import MetricSpec, register\n"
        "def ate_only(estimate):\n    return estimate.ate_hat\n"
        "register(MetricSpec('sig_ate', goal='lower', needs_truth=False, split='train', description='',"
        " fn='sig_metrics.ate_only'))\n"),
    "bad_yaml": lambda folder: (folder / "conf" / "estimator").mkdir(parents=True) or (
        folder / "conf" / "estimator" / "broken.yaml").write_text(
        "_target_: hte_bench.estimators.ols.InteractionOLS\ninteractions: true\n   cov_type: HC1: x\n"),
}

# (case id, setup, command line, text the one error line must contain). Numbers refer to issue 10.
CASES = [
    # Hydra's composition: nothing runs, nothing is created.
    ("group-typo", None, ["data=engagment"],
     "data=engagment is not an option (did you mean data=engagement?); allowed data options: csv, engagement,"),
    ("unknown-option", None, ["estimator=nope"],
     "estimator=nope is not an option; allowed estimator options: causal_forest_dml,"),
    ("group-name-typo", None, ["estimater=zero_effect"],
     "estimater is not a key of this config; did you mean estimator?"),
    ("top-key-typo", None, ["n_seed=3"], "n_seed is not a key of this config; did you mean n_seeds or seed?"),
    ("knob-by-another-name", None, ["data.sample_size=500"],
     "data.sample_size is not a key of this config; the keys there: data.n, data.n_test,"),
    ("6-key-typo", None, ["estimator.model.n_estimatorz=10"],
     "estimator.model.n_estimatorz is not a key of this config; did you mean estimator.model.n_estimators?"),
    ("swept-option-typo", None, ["-m", "data=engagement,nowhere"],
     f"data=nowhere is not an option; allowed data options: {', '.join(group_options('data'))}"),
    ("1-swept-typo-local-conf", "conf", ["-m", "data=engagment,workforce", "estimator=zero_effect"],
     "data=engagment is not an option (did you mean data=engagement?)"),
    ("1-local-option-typo", "conf", ["-m", "estimator=cf_smal,zero_effect"],
     "estimator=cf_smal is not an option (did you mean estimator=cf_small?)"),
    ("2-data-null", "module", ["data=null"],
     "data=null: a config group cannot be set to null on the command line; for your own generator keep the "
     "group and write data._target_=my_module.generate data.n=2000"),
    ("2-knob-after-delete", "module", ["~data", "data.n=2000"],
     "data.n: data was removed (~data?); to add it write +data.n=...; or leave out ~data"),
    ("generator-function-typo", "module", ["data._target_=my_module.generat"],
     "data._target_=my_module.generat: my_module has no 'generat' (did you mean "
     "data._target_=my_module.generate?)"),
    ("generator-module-typo", "module", ["data._target_=my_modul.generate"],
     "data._target_=my_modul.generate: no module 'my_modul' (did you mean data._target_=my_module.generate?)"),
    ("grid-null", None, ["grid=null"], "grid is unset by default, so leave grid=null out"),
    ("grid-without-m", None, ["grid=meta_learners"], "grid=meta_learners is a tuning grid: it runs with -m"),
    ("swept-number-typo", None, ["-m", "data.noise=0.5,2.O"], "data.noise=2.O is not a number (data.noise is 1.0"),
    ("search-plus", None, ["-m", "+hparams_search=linear_dml"],
     "hparams_search is already in the defaults; write hparams_search=linear_dml (without +)"),
    # hte-bench's checks of the composed config: before the store is reached.
    ("2-data-deleted", "module", ["~data"], "no data generator (removed with ~data?)"),
    ("n-seeds", None, ["n_seeds=0"], "n_seeds=0 is not allowed; n_seeds must be an integer ≥ 1"),
    ("negative-n", None, ["data.n=-5"], "data.n=-5 is not allowed"),
    ("zero-n", None, ["estimator=interaction_ols", "data.n=0"], "data.n=0 is not allowed"),
    ("alpha", None, ["estimator=interaction_ols", "alpha=1.5"], "alpha=1.5 is not allowed"),
    ("seeds", None, ["seeds=[a]"], "seeds=['a'] is not allowed; seeds must be a non-empty list of integers ≥ 0"),
    ("seeds-empty", None, ["seeds=[]"], "seeds=[] is not allowed; seeds must be a non-empty list of integers ≥ 0"),
    ("seeds-repeated", None, ["seeds=[3,3]"], "seeds=[3, 3] repeats seed(s) [3]"),
    ("seeds-and-n-seeds", None, ["n_seeds=3", "seeds=[1,2]"],
     "n_seeds=3 would not be used: seeds=[1, 2] (given too) names the seeds; give one of them"),
    ("objective-per-seed", None, ["-m", "estimator=zero_effect", "optimized_metric=rscore"],
     "optimized_metric=rscore is a per-seed metric; a sweep optimises a configuration's aggregate across its "
     "seeds: did you mean optimized_metric=rscore_mean?"),
    ("search-data-knob", None, ["-m", "hparams_search=linear_dml", "data.noise=0.5,2.0"],
     "hte_optuna: data.noise is searched (choice(0.5, 2.0)), but a search compares trials on one data condition"),
    ("search-direction", None, ["-m", "hparams_search=linear_dml", "optimized_metric=rscore_mean",
                                "hydra.sweeper.direction=minimize"],
     "hydra.sweeper.direction=minimize, but optimized_metric=rscore_mean is to maximize"),
    ("metric-typo", None, ["optimized_metric=cate_rmse_tset_mean"],
     "metric 'cate_rmse_tset_mean' is not registered (did you mean cate_rmse_test_mean?)"),
    ("uri-scheme", None, ["tracking.uri=ftp://example/x"], "tracking.uri='ftp://example/x' has scheme 'ftp'"),
    ("7-csv-missing-file", None, ["data=csv", "data.path=/nonexistent.csv"],
     "data.path='/nonexistent.csv': does not exist"),
    ("7-csv-relative-typo", "csv", ["data=csv", "data.path=mycsv"],
     "data.path='mycsv': does not exist (relative to the working folder"),
    ("7-csv-columns", "csv", ["data=csv", "data.path=my.csv"],
     "data.outcome, data.treatment required: give data.outcome=<column> data.treatment=<column>; "
     "columns in my.csv: a, t, y"),
    ("resume", None, ["resume=maybe"], "resume='maybe' is not allowed; resume must be true, false or force"),
    ("metric-module", None, ["metric_modules=[my_metricz]"], "metric module 'my_metricz' is not found: put "
                                                            "my_metricz.py in the folder you run from"),
    ("metric-module-file", None, ["metric_modules=[my_metrics.py]"],
     "metric module 'my_metrics.py': give the module's name, not its file name: my_metrics"),
    ("objective-own-metric", None, ["optimized_metric=ate_abs_error_mean"],
     "(did you mean ate_bias_mean? or a metric of your own? name the module that registers it"),
    ("metric-fn", "metric_typo", ["metric_modules=[typo_metrics]"],
     "fn='typo_metrics.ate_abs_eror': typo_metrics has no function 'ate_abs_eror' (did you mean "
     "typo_metrics.ate_abs_error?)"),
    ("metric-signature", "metric_sig", ["metric_modules=[sig_metrics]"],
     "metric 'sig_ate': fn='sig_metrics.ate_only' must take (truth, estimate); it takes (estimate)"),
    ("yaml-slip", "bad_yaml", ["estimator=broken"], "broken.yaml, line 3, column 12: YAML syntax error: mapping "
                                                    "values are not allowed here"),
    ("yaml-slip-sweep", "bad_yaml", ["-m", "estimator=zero_effect,broken"], "broken.yaml, line 3, column 12"),
    # The store: a dead server within tracking.timeout (default 10 s), SQLite paths that cannot work.
    ("4-dead-server", None, [f"tracking.uri=http://127.0.0.1:{DEAD_PORT}"],
     f"tracking.uri='http://127.0.0.1:{DEAD_PORT}': no MLflow server answers there within 10 s (connection refused)"),
    ("4-dead-server-sweep", None, ["-m", "estimator=zero_effect,interaction_ols", "tracking.timeout=2",
                                   f"tracking.uri=http://127.0.0.1:{DEAD_PORT}"], "within 2 s (connection refused)"),
    ("timeout", None, ["tracking.timeout=0"], "tracking.timeout=0 is not allowed"),
    ("5-sqlite-under-a-file", None, ["tracking.uri=sqlite:////etc/hostname/x.db"],
     "tracking.uri='sqlite:////etc/hostname/x.db': /etc/hostname is a file, not a folder"),
    # The first seed's data and fit, before any run is opened.
    ("3-too-small", None, ["estimator=zero_effect", "data.n=5"],
     "data.n=5 gives {0: 2, 1: 3} units per treatment arm in the training sample; hte-bench needs at least 10"),
    ("one-arm", None, ["estimator=interaction_ols", "data.p_treat=0.0", *TINY], "treatment is constant"),
    ("generator-error", None, ["estimator=zero_effect", "data.noise=-1", *TINY],
     "data: ValueError: scale < 0 (from hte_bench.data.engagement.generate with data.n=300"),
    ("csv-one-arm", "csv_one_arm", ["data=csv", "data.path=my.csv", "data.outcome=y", "data.treatment=t",
                                    "estimator=zero_effect", "n_seeds=1"], "treatment column 't' is constant (0)"),
    ("6-added-typo", "conf", ["+estimator.model.n_estimatorz=10", "estimator=cf_small", *TINY],
     "got an unexpected keyword argument 'n_estimatorz'; did you mean n_estimators?"),
    ("missing-package", None, ["estimator=causalml_s_learner", "estimator.model._target_=not_installed_lib.Learner"],
     "estimator: causalml_s_learner needs the package not_installed_lib, not installed: pip install not_installed_lib"),
    ("econml-inference-typo", None, ["estimator=linear_dml", "estimator.inference=bootstrapp", *TINY],
     "estimator.inference='bootstrapp' is not an inference LinearDML offers (did you mean "
     "estimator.inference=bootstrap?); allowed: auto, bootstrap, statsmodels, or null"),
    ("unknown-param", None, ["estimator=interaction_ols", "+estimator.not_a_param=1", *TINY], "not_a_param"),
    ("fit-rejects", "conf", ["estimator=cf_small", "estimator.model.n_estimators=41", *TINY], "n_estimators"),
    ("8-sweep-only-job-fails", None, ["-m", "estimator=zero_effect", "data.p_treat=0.0", *TINY],
     "treatment is constant"),
    # The comparison scripts.
    ("leaderboard-no-store", None, ["hte-bench-leaderboard"], "no MLflow store at sqlite:///"),
    ("leaderboard-metric-typo", None, ["hte-bench-leaderboard", "--metric", "cate_rmse_tset"],
     "metric 'cate_rmse_tset' is not registered (did you mean cate_rmse_test?)"),
    ("leaderboard-correction-typo", None, ["hte-bench-leaderboard", "--correction", "BH"],
     "'fdr_tsbky'); did you mean fdr_bh? (see hte-bench-leaderboard --help)"),
    ("promote-no-store", None, ["hte-bench-promote", "--name", "x"], "no MLflow store at sqlite:///"),
    ("promote-gate-percent", None, ["hte-bench-promote", "--name", "x", "--min-ate-coverage", "95"],
     "--min-ate-coverage=95 is not allowed; a coverage gate is a share between 0 and 1 (a share: 0.95 for 95%)"),
    ("promote-config-out", None, ["hte-bench-promote", "--name", "x", "--config-out", "/etc/hostname/x"],
     "--config-out=/etc/hostname/x: /etc/hostname is a file, not a folder"),
    ("promote-config-out-yaml", None, ["hte-bench-promote", "--name", "x", "--config-out", "myexp.yaml"],
     "--config-out=myexp.yaml is a file name; give the folder promoted_<name>.yaml goes into"),
    ("promote-metric-typo", None, ["hte-bench-promote", "--name", "x", "--metric", "cate_rmse_tset"],
     "metric 'cate_rmse_tset' is not registered (did you mean cate_rmse_test?)"),
]
SCRIPTS = ("hte-bench-leaderboard", "hte-bench-promote")
# Cases whose refusal a real process shows (exit status, stderr up to its atexit hooks, files left in a fresh
# folder, wall time against a dead server): one per layer that refuses.
IN_A_PROCESS = {"group-typo", "4-dead-server", "3-too-small", "8-sweep-only-job-fails", "promote-no-store"}
EXE = {script: shutil.which(script) for script in ("hte-bench", *SCRIPTS)}  # before any run changes $PATH


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _prepare(case, root: Path, template: Path) -> tuple[str, list[str], Path, set[str]]:
    """A case's own folder (with its setup): (script, arguments, folder, files there before the run)."""
    name, setup, args, _ = case
    folder = root / name
    folder.mkdir()
    SETUPS[setup](folder)
    script, args = (args[0], args[1:]) if args[0] in SCRIPTS else ("hte-bench", args)
    if script == "hte-bench" and "estimator" not in " ".join(args):
        args = [*args, "estimator=zero_effect"]  # the cheapest estimator, if the case gets that far
    if script == "hte-bench" and name not in IN_A_PROCESS:
        _copy_template(template, folder / "mlruns")  # an existing store: store creation is the processes' case
    return script, args, folder, _tree(folder)


def _attempt(case, root: Path, template: Path, env: dict[str, str] | None = None) -> dict:
    """Run one case, as a process of its own with ``env``, else here; what a user would see, and what it left."""
    script, args, folder, before = _prepare(case, root, template)
    if env is not None:
        proc, cpu, wall = _timed([EXE[script], *args], folder, env)
    else:
        t0 = time.perf_counter()
        proc = run_here(args, folder, script=script)
        cpu, wall = proc.cpu, time.perf_counter() - t0
    return {"proc": proc, "cpu": cpu, "wall": wall, "script": script, "folder": folder,
            "left": _tree(folder) - before}


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command; also its CPU seconds (user + system, from wait4), which other jobs' load does not inflate."""
    out, err = cwd.parent / f"{cwd.name}.out", cwd.parent / f"{cwd.name}.err"
    t0 = time.perf_counter()
    with out.open("w") as fo, err.open("w") as fe:
        child = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe, text=True)
        killer = threading.Timer(WALL_LIMIT, child.kill)  # a hang fails the case instead of the suite
        killer.start()
        _, status, usage = os.wait4(child.pid, 0)
        killer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    proc = subprocess.CompletedProcess(cmd, child.returncode, out.read_text(), err.read_text())
    return proc, usage.ru_utime + usage.ru_stime, time.perf_counter() - t0


@pytest.fixture(scope="module")
def attempts(tmp_path_factory, request, _template_db):
    """Every selected case: the processes side by side (each is mostly start-up), the rest meanwhile here."""
    root = tmp_path_factory.mktemp("new_user")
    selected = {item.callspec.params["case"][0] for item in request.session.items
                if hasattr(item, "callspec") and "case" in item.callspec.params}
    cases = [c for c in CASES if c[0] in selected or c[0] == "8-sweep-only-job-fails"]
    env = cli_env()  # taken before the in-process runs change this process's environment
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = {c[0]: pool.submit(_attempt, c, root, _template_db, env) for c in cases if c[0] in IN_A_PROCESS}
        done = {c[0]: _attempt(c, root, _template_db) for c in cases if c[0] not in IN_A_PROCESS}
        done.update({name: future.result() for name, future in running.items()})
    for name, got in done.items():  # shown with -s: what each refusal cost
        where = "process" if name in IN_A_PROCESS else "here"
        print(f"{name:28s} {where:8s} cpu {got['cpu']:5.1f} s  wall {got['wall']:5.1f} s")
    return done


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_mistake_gets_one_line_and_leaves_nothing(attempts, case):
    name, _, _, expected = case
    got = attempts[name]
    proc = got["proc"]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"{got['script']}: error: ") and expected in lines[0], lines[0]
    assert got["cpu"] < CPU_LIMIT and got["wall"] < WALL_LIMIT, (got["cpu"], got["wall"])
    # Nothing left but, at most, an empty store (created before the first seed was found unfit).
    assert got["left"] <= {"mlruns", "mlruns/mlflow.db"}, sorted(got["left"])
    if (got["folder"] / "mlruns" / "mlflow.db").exists():
        assert all_runs(f"sqlite:///{got['folder'] / 'mlruns' / 'mlflow.db'}", "hte-bench") == []


def test_a_sweep_whose_every_job_was_refused_leaves_no_sweep_run(attempts):
    from mlflow.entities import ViewType

    store = attempts["8-sweep-only-job-fails"]["folder"] / "mlruns" / "mlflow.db"
    c = client(f"sqlite:///{store}")
    runs = c.search_runs([c.get_experiment_by_name("hte-bench").experiment_id], run_view_type=ViewType.ALL)
    # Deleted (MLflow's soft delete: hidden in the UI and every search; `mlflow gc` purges it), never FINISHED.
    assert [(r.data.tags["hte_bench.kind"], r.info.lifecycle_stage) for r in runs] == [("sweep", "deleted")]


# ---- what a new user is told works, works ----


# What these commands fit is not their subject: insights.md and the interpretation trees off (seconds a seed).
NO_MODELS = ["++analyses.insights=false", "analyses.interpretation=false"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """hte-bench through its entry point in this process, as its process would run; it must succeed quietly."""
    proc = run_here(args, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [line for line in proc.stderr.splitlines() if "error" in line.lower()], proc.stderr[-3000:]
    return proc


def test_own_generator_from_its_folder_gets_only_the_users_knobs(tmp_path):
    """Issue 10, case 2: the README's command, from the folder holding my_module.py, without PYTHONPATH."""
    (tmp_path / "my_module.py").write_text(MY_MODULE)
    env_path = os.environ.get("PYTHONPATH", "")
    assert str(tmp_path) not in env_path
    # In this process, which starts, as a console script's does, without the working folder on sys.path
    # (tests/in_process.py): hte-bench must add it.
    _run(["data._target_=my_module.generate", "data.n=300", "estimator=interaction_ols", *TINY[:1], *TINY[3:],
          *NO_MODELS], tmp_path)
    runs = all_runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", "hte-bench")
    parent = next(r for r in runs if r.data.tags["hte_bench.kind"] == "config")
    assert parent.info.status == "FINISHED" and parent.data.tags["data"] == "my_module"
    assert parent.info.run_name.startswith("my_module/interaction_ols/")
    data_params = {k: v for k, v in parent.data.params.items() if k.startswith("data.")}
    assert data_params == {"data._target_": "my_module.generate", "data.n": "300"}  # no noise, no p_treat


def test_sweep_in_a_folder_with_its_own_conf(tmp_path):
    """Issue 10, case 1: ``-m`` the README's way where ./conf exists (as promotion leaves it)."""
    _local_conf(tmp_path)
    _run(["-m", "estimator=zero_effect,my_ols", "+experiment=x", *TINY[1:], *NO_MODELS], tmp_path)
    runs = all_runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", "hte-bench")
    kinds = sorted((r.data.tags["hte_bench.kind"], r.data.tags.get("estimator", "")) for r in runs)
    assert kinds == [("config", "my_ols"), ("config", "zero_effect"), ("seed", "my_ols"),
                     ("seed", "zero_effect"), ("sweep", "")]  # n_seeds=1 came from conf/experiment/x.yaml
    assert all(r.info.status == "FINISHED" for r in runs)


def test_served_champion_takes_integer_features(tmp_path, store):
    """Issue 10, case 10: integer columns (int64, not just 0/1) are accepted by the registered model."""
    import mlflow
    import numpy as np
    import pandas as pd

    from conftest import compose
    from hte_bench.seed import make_data, make_estimator
    from hte_bench.tracking import Tracker

    cfg = compose(["estimator=interaction_ols", "data.n=300", "data.n_test=100"])
    dataset, _ = make_data(cfg, 0)
    adapter = make_estimator(cfg, 0).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    tracker = Tracker.from_config({"uri": store, "experiment": "serve"})
    (tmp_path / "files").mkdir()
    tracker.register_model("ints", adapter, dataset.X_train, 0.05, run_name="promote/ints", params={}, tags={},
                           version_tags={}, artifact_dir=str(tmp_path / "files"))
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model("models:/ints@champion")
    ints = pd.DataFrame({c: np.arange(2, 12, dtype=np.int64) for c in dataset.feature_names})
    pred = model.predict(ints)
    np.testing.assert_allclose(pred["tau_hat"], adapter.effect(ints.astype(float)))
    with pytest.raises(Exception, match=r"feature column\(s\) \['age'\] hold missing or non-numeric values"):
        model.predict(ints.assign(age="old"))


def test_a_promotion_that_fails_before_champion_moves_leaves_no_version(tmp_path, store):
    """A registration stopped half-way (here a tag MLflow refuses) leaves neither a half-tagged version nor a
    model without versions, and its promotion run ends FAILED; the error is the store's own."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from conftest import compose
    from hte_bench.seed import make_data, make_estimator
    from hte_bench.tracking import Tracker

    cfg = compose(["estimator=interaction_ols", "data.n=300", "data.n_test=100"])
    dataset, _ = make_data(cfg, 0)
    adapter = make_estimator(cfg, 0).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    tracker = Tracker.from_config({"uri": store, "experiment": "undo"})
    (tmp_path / "files").mkdir()
    with pytest.raises(MlflowException):
        tracker.register_model("undone", adapter, dataset.X_train, 0.05, run_name="promote/undone", params={},
                               tags={}, version_tags={"not a valid key?": 1}, artifact_dir=str(tmp_path / "files"))
    client = mlflow.MlflowClient(store)
    assert client.search_registered_models("name='undone'") == []
    (run,) = client.search_runs([tracker.experiment_id])
    assert run.info.status == "FAILED"
