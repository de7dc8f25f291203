"""Bad input at the command line: one line naming the field and the allowed values, exit ≠ 0, empty store."""
import pytest

from conftest import SMALL, all_runs, run_cli
from hte_bench.cli.run import group_options


def _error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("hte-bench: error:")]


@pytest.mark.parametrize("args, expected", [
    (["estimator=nope"], "estimator=nope is not an option; allowed estimator options: causal_forest_dml,"),
    (["-m", "data=engagement,nowhere"],
     f"data=nowhere is not an option; allowed data options: {', '.join(group_options('data'))}"),
    (["n_seeds=0"], "n_seeds=0 is not allowed; n_seeds must be an integer ≥ 1"),
    (["data.n=-5"], "data.n=-5 is not allowed"),
    (["tracking.uri=ftp://example/x"], "tracking.uri='ftp://example/x' has scheme 'ftp'; allowed: sqlite://"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, expected):
    proc = run_cli([*args, "estimator=zero_effect" if "estimator" not in " ".join(args) else "n_seeds=1"],
                   cwd=tmp_path)
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    store = tmp_path / "mlruns" / "mlflow.db"
    assert not store.exists() or all_runs(f"sqlite:///{store}", "hte-bench") == []


def test_a_bad_job_in_a_sweep_does_not_stop_the_others(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    proc = run_cli(["-m", "estimator=zero_effect", "data.p_treat=0.0,0.5", "n_seeds=1", *SMALL], cwd=tmp_path)
    assert proc.returncode != 0
    assert len(_error_lines(proc)) == 1 and "treatment is constant" in _error_lines(proc)[0]
    runs = all_runs(store, "hte-bench")
    kinds = sorted(r.data.tags["hte_bench.kind"] for r in runs)
    assert kinds == ["config", "seed", "sweep"]  # the good job's parent and child, under the sweep run
    assert all(r.info.status == "FINISHED" for r in runs)


def test_help_lists_the_groups(tmp_path):
    proc = run_cli(["--help"], cwd=tmp_path)
    assert proc.returncode == 0
    assert "estimator: causal_forest_dml" in proc.stdout
    assert f"data: {', '.join(group_options('data'))}" in proc.stdout
    assert list(tmp_path.iterdir()) == []
