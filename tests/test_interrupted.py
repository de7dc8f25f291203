"""A first run stopped (Ctrl-C) while it creates the store leaves no half-made store: the next run works."""
import os
import shutil
import signal
import subprocess
import time

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
