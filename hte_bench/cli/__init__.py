"""Console entry points: hte-bench (run.py), hte-bench-leaderboard and hte-bench-promote (compare.py)."""
import os
import sys


def current_folder_importable() -> None:
    """Let the user's modules in the current folder (a generator, metric modules) import as they would in
    ``python -c``: console scripts put their own folder on sys.path, not the current one."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())


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


def run_main() -> None:
    """Console entry point of ``hte-bench``: its imports (Hydra, half a second) stopped by Ctrl-C end in one
    line, as the rest of the command does, not in a traceback."""
    try:
        from hte_bench.cli.run import main
    except KeyboardInterrupt:
        print("hte-bench: interrupted", file=sys.stderr)
        sys.exit(130)
    main()
