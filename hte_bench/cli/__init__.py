"""Console entry points: hte-bench (run.py), hte-bench-leaderboard and hte-bench-promote (compare.py)."""
import os
import sys


def current_folder_importable() -> None:
    """Let the user's modules in the current folder (a generator, metric modules) import as they would in
    ``python -c``: console scripts put their own folder on sys.path, not the current one."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


def quiet_store_log() -> None:
    """MLflow's SQL store logs in its own words what the command says in one line: a new SQLite store in two
    INFO lines, and every database error with its traceback before raising it (after a Ctrl-C that stopped a
    write, the clean-up's "database is locked" printed 160 lines above the one line)."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def keep_interrupts() -> None:
    """A Ctrl-C that lands in a garbage-collection callback (SQLAlchemy's weakref clean-ups) is only printed by
    Python ("Exception ignored in ... KeyboardInterrupt") and the command went on to exit 0: such an
    interrupt is raised again in the main thread."""
    import _thread
    import threading

    default = sys.unraisablehook
    if getattr(default, "keeps_interrupts", False):
        return

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # From another thread, once this hook has returned: raised inside the hook, it would be ignored again.
            timer = threading.Timer(0.05, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            return
        default(unraisable)

    hook.keeps_interrupts = True
    sys.unraisablehook = hook


def _entry(module: str, name: str, prog: str) -> None:
    """Run the console entry point ``module:name`` in a process set up for the command line (keep_interrupts,
    quiet_store_log): a Ctrl-C during its imports (Hydra, numpy, pandas: half a second) ends in one line and
    exit 130, as the rest of the command does, and output piped into a reader that stops early (``| head``)
    ends quietly; neither prints a traceback."""
    import importlib

    keep_interrupts()
    quiet_store_log()
    try:
        main = getattr(importlib.import_module(module), name)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    try:
        main()
        sys.stdout.flush()
    except BrokenPipeError:
        # As Python's documentation advises: no further writes to the closed pipe (nor at exit), exit 1.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def run_main() -> None:
    """Console entry point of ``hte-bench``."""
    _entry("hte_bench.cli.run", "main", "hte-bench")


def leaderboard_main() -> None:
    """Console entry point of ``hte-bench-leaderboard``."""
    _entry("hte_bench.cli.compare", "leaderboard_main", "hte-bench-leaderboard")


def promote_main() -> None:
    """Console entry point of ``hte-bench-promote``."""
    _entry("hte_bench.cli.compare", "promote_main", "hte-bench-promote")
