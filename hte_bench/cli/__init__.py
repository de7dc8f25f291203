"""Console entry points: hte-bench (run.py), hte-bench-leaderboard and hte-bench-promote (compare.py)."""
import os
import sys


def current_folder_importable() -> None:
    """Let the user's modules in the current folder (a generator, metric modules) import as they would in
    ``python -c``: console scripts put their own folder on sys.path, not the current one."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
