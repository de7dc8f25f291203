"""Comparing configurations: leaderboard, promotion to the model registry, serving (no MLflow here except through tracking)."""
