"""Console entry points: hte-bench (run.py), hte-bench-leaderboard and hte-bench-promote (compare.py)."""
