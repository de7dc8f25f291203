"""A first run stopped (Ctrl-C) while it creates the store leaves no half-made store: the next run works."""
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import LEAN, cli_env
from in_process import run_here

ARGS = ["estimator=zero_effect", "n_seeds=1", *LEAN]


def test_ctrl_c_while_the_store_is_created_leaves_nothing_the_next_run_trips_over(tmp_path):
    proc = subprocess.Popen([shutil.which("hte-bench"), *ARGS], cwd=tmp_path,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    for line in proc.stdout:
        if "creating a new MLflow store" in line:
            break
    # MLflow's migrations take about a second or more here: this lands in them (before the fix, the store left
    # behind made every later run fail with "table ... already exists").
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err  # one line, as a command line tool says it
    assert err.strip().splitlines()[-1].startswith("hte-bench: interrupted"), err[-2000:]
    mlruns = tmp_path / "mlruns"
    assert not [name for name in os.listdir(mlruns) if name.endswith(".creating")]
    again = run_here(ARGS, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]


def test_ctrl_c_behind_a_librarys_clean_up_error_is_still_an_interruption():
    # SQLAlchemy invalidates a connection a KeyboardInterrupt stopped; alembic's clean-up then raised
    # PendingRollbackError in its place, and the CLI printed that traceback and exited 1 (CI, under load).
    from sqlalchemy.exc import PendingRollbackError

    from hte_bench.errors import interrupted

    def clean_up_after_ctrl_c():
        try:
            raise KeyboardInterrupt
        finally:
            raise PendingRollbackError("Can't reconnect until invalid transaction is rolled back")

    try:
        clean_up_after_ctrl_c()
    except PendingRollbackError as err:
        assert interrupted(err)
    try:
        raise RuntimeError("outer") from ValueError("inner")
    except RuntimeError as err:
        assert not interrupted(err)
    try:  # raised from another error while handling the interrupt: the interrupt is in __context__ only
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("clean-up") from OSError("disk")
    except RuntimeError as err:
        assert interrupted(err)


class _StoppedWriting:
    """A Tracker whose next write step is stopped by Ctrl-C (the step is ours; MLflow itself is real)."""

    @staticmethod
    def tracker(store, stop: str):
        from hte_bench.tracking.runs import Tracker

        class Stopped(Tracker):
            def _batch(self, run_id, metrics=None, params=None, tags=None):
                if stop == "params" and params:
                    raise KeyboardInterrupt
                return super()._batch(run_id, metrics, params, tags)

            def _log_files(self, artifact_uri, local_dir):
                if stop == "artifacts":
                    raise KeyboardInterrupt
                return super()._log_files(artifact_uri, local_dir)

        return Stopped(store, "stopped")


def test_a_run_stopped_before_its_params_is_deleted_and_a_seed_run_stopped_half_way_ends_killed(store, tmp_path):
    # Left RUNNING without params, a configuration run was found by the rerun (resume matches tags) and finished
    # without params, which can never be added; a seed run stopped while its files were written stayed RUNNING.
    from mlflow.entities import ViewType

    from hte_bench.seed import SeedResult

    tracker = _StoppedWriting.tracker(store, "params")
    with pytest.raises(KeyboardInterrupt):
        tracker.start_parent("engagement/ols/abc123", params={"alpha": 0.05}, tags={"config_hash": "abc123"})
    assert not tracker.client.search_runs([tracker.experiment_id])  # deleted: nothing for a resume to match
    assert len(tracker.client.search_runs([tracker.experiment_id], run_view_type=ViewType.DELETED_ONLY)) == 1

    tracker = _StoppedWriting.tracker(store, "artifacts")
    parent = tracker.start_parent("engagement/ols/def456", params={"alpha": 0.05}, tags={"config_hash": "def456"})
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "insights.md").write_text("# Insights\n")
    with pytest.raises(KeyboardInterrupt):
        tracker.log_seed(parent, SeedResult(seed=0, status="FINISHED", artifact_dir=str(tmp_path / "seed")),
                         tags={"estimator": "ols"})
    child = [r for r in tracker.client.search_runs([tracker.experiment_id]) if r.info.run_id != parent]
    assert [r.info.status for r in child] == ["KILLED"]


def test_ctrl_c_in_a_garbage_collection_callback_still_stops_the_command():
    # CPython only prints a KeyboardInterrupt raised in a __del__ or weakref callback (SQLAlchemy's clean-ups):
    # the command went on and exited 0. keep_interrupts raises it again in the main thread.
    import sys

    from hte_bench.cli import keep_interrupts

    class Collected:
        def __del__(self):
            raise KeyboardInterrupt

    before = sys.unraisablehook
    # Python's own Ctrl-C handler, as in a terminal: a process started in the background (CI's `... &`) ignores
    # SIGINT, and then nothing raises KeyboardInterrupt (nor is there a Ctrl-C to re-raise).
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    keep_interrupts()
    try:
        with pytest.raises(KeyboardInterrupt):
            Collected()
            for _ in range(200):
                time.sleep(0.01)
    finally:
        sys.unraisablehook = before
        signal.signal(signal.SIGINT, handler)


def test_ctrl_c_during_the_leaderboard_is_one_line_and_exit_130(monkeypatch, capsys):
    from hte_bench.cli import compare

    def stopped(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "load", stopped)
    before = __import__("sys").unraisablehook
    try:
        with pytest.raises(SystemExit) as info:
            compare.leaderboard_main(["--tracking-uri", "sqlite:///nowhere.db"])
    finally:
        __import__("sys").unraisablehook = before
    assert info.value.code == 130
    assert capsys.readouterr().err == "hte-bench-leaderboard: interrupted (Ctrl-C); the board was not logged\n"


def test_ctrl_c_while_a_finished_run_is_reopened_for_more_seeds_leaves_it_finished(store, monkeypatch):
    # The first seed's claim had looked the run up already, so the runner took the reopened run for not yet
    # its own and left it RUNNING: boards read only FINISHED runs, and the configuration vanished from them.
    from conftest import SMALL, all_runs, run_composed
    from hte_bench.tracking.runs import Tracker

    args = ["estimator=zero_effect", *SMALL, "tracking.plots=false", "analyses.truth_free=false",
            f"tracking.uri={store}"]
    run_composed([*args, "n_seeds=1"])
    reopen = Tracker.reopen

    def stopped(self, run_id):
        reopen(self, run_id)
        raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, "reopen", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_composed([*args, "n_seeds=2"])
    configs = [r for r in all_runs(store, "hte-bench") if r.data.tags.get("hte_bench.kind") == "config"]
    assert [r.info.status for r in configs] == ["FINISHED"]


@pytest.mark.parametrize("entry, module, prog", [("run_main", "hte_bench.cli.run", "hte-bench"),
                                                 ("leaderboard_main", "hte_bench.cli.compare", "hte-bench-leaderboard"),
                                                 ("promote_main", "hte_bench.cli.compare", "hte-bench-promote")])
def test_ctrl_c_while_a_command_imports_its_libraries_is_one_line(monkeypatch, capsys, entry, module, prog):
    # The console scripts imported Hydra, numpy, pandas (half a second) before their handlers: Ctrl-C then
    # printed a traceback.
    import sys

    import hte_bench.cli

    class Stopped:
        def find_spec(self, name, path=None, target=None):
            if name == module:
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "meta_path", [Stopped(), *sys.meta_path])
    with pytest.raises(SystemExit) as info:
        getattr(hte_bench.cli, entry)()
    assert info.value.code == 130 and capsys.readouterr().err == f"{prog}: interrupted\n"


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    # `hte-bench-leaderboard | head` printed a BrokenPipeError traceback.
    import sys

    (tmp_path / "long_board.py").write_text("def main():\n    for i in range(200000):\n        print('row', i)\n")
    proc = subprocess.Popen([sys.executable, "-c", "from hte_bench.cli import _entry; "
                             "_entry('long_board', 'main', 'hte-bench-leaderboard')"],
                            cwd=tmp_path, env={**cli_env(), "PYTHONPATH": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `head` does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1 and err == ""
