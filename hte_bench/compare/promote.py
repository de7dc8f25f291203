"""Promotion decisions and the reproducible config file of the winner (pure: no MLflow here)."""
from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd
from omegaconf import OmegaConf

from hte_bench.compare.study import KIND_NOTES, PER_UNIT_VALID
from hte_bench.errors import ConfigError


@dataclass
class Gates:
    """Conditions a configuration must meet to be promoted; None disables a gate."""

    min_ate_coverage: Optional[float] = None
    max_failed_seeds: Optional[int] = None
    min_seeds: Optional[int] = None
    require_significance: bool = False
    min_cate_coverage: Optional[float] = None  # counted only for intervals that claim per-unit validity


@dataclass
class Decision:
    """The winner (a leaderboard row) or None, and for every candidate why it passed or failed."""

    winner: Optional[pd.Series]
    reasons: dict[str, list[str]] = field(default_factory=dict)


def _failures(row: pd.Series, group: pd.DataFrame, gates: Gates) -> list[str]:
    out = []
    if gates.min_ate_coverage is not None:
        rate = row.get("ate_coverage_rate")
        if rate is None or not math.isfinite(rate) or rate < gates.min_ate_coverage:
            out.append(f"ATE coverage rate {rate} < {gates.min_ate_coverage}")
    if gates.min_cate_coverage is not None:
        kind, cover = row.get("interval_kind", "unknown"), row.get("cate_coverage_test_mean")
        if kind not in PER_UNIT_VALID:  # a repeated ATE interval or a dishonest forest proves nothing per unit
            out.append(f"per-unit coverage of kind {kind} is not evidence of valid per-unit intervals "
                       f"({KIND_NOTES.get(kind, kind)})")
        elif cover is None or not math.isfinite(cover) or cover < gates.min_cate_coverage:
            out.append(f"per-unit coverage {cover} < {gates.min_cate_coverage}")
    if gates.max_failed_seeds is not None and (row.get("seeds_failed") or 0) > gates.max_failed_seeds:
        out.append(f"{int(row['seeds_failed'])} failed seeds > {gates.max_failed_seeds}")
    if gates.min_seeds is not None and (row.get("seeds_ok") or 0) < gates.min_seeds:
        out.append(f"{int(row.get('seeds_ok') or 0)} finished seeds < {gates.min_seeds}")
    if gates.require_significance:
        if row["vs_best"] != "best":
            out.append("not the best configuration (significance required)")
        else:
            unresolved = group[group["vs_best"].isin(["tied", "untested"])]
            if len(unresolved):
                out.append(f"not significantly better than {len(unresolved)} other configuration(s): "
                           + ", ".join(f"{r.estimator} {r.overrides}".strip() for r in unresolved.itertuples()))
    return out


def _note(row: pd.Series, gates: Gates) -> str:
    """What a passed coverage gate does not say (a conservative bound covers more than 1-α by design)."""
    if gates.min_ate_coverage is not None and row.get("ate_interval_kind") == "conservative_bound":
        return f" (ATE interval is a {KIND_NOTES['conservative_bound']})"
    return ""


def choose(board: pd.DataFrame, gates: Gates) -> Decision:
    """The best-ranked configuration of a one-condition leaderboard that passes every gate."""
    if board["condition_hash"].nunique() != 1:
        raise ConfigError(f"promotion needs one data condition; the leaderboard has "
                          f"{', '.join(repr(c) for c in sorted(board['condition'].unique()))}: "
                          f"choose one with --condition (or --data)")
    decision = Decision(winner=None)
    for _, row in board.sort_values("rank").iterrows():
        label = f"{row['estimator']} {row['overrides']} [{row['config_hash']}]".replace("  ", " ")
        failed = _failures(row, board, gates)
        decision.reasons[label] = failed or ["passes every gate" + _note(row, gates)]
        if not failed and decision.winner is None:
            decision.winner = row
    return decision


_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_model_name(name: str) -> str:
    """Model names become file names (promoted_<name>.yaml), so keep them to letters, digits, _ . -"""
    if not name or not _NAME.match(name):
        raise ConfigError(f"--name={name!r} is not allowed; use letters, digits, '_', '.' or '-'")
    return name


def experiment_config(config_yaml: str, choices: dict[str, str], header: list[str]) -> str:
    """A ``# @package _global_`` experiment file that recomposes the logged configuration exactly.

    The defaults select the logged group options (data, estimator, nuisance models), then the logged
    values (interpolations such as ``${seed}`` kept) are merged over them; tracking is left to the user.
    """
    composed = OmegaConf.to_container(OmegaConf.create(config_yaml), resolve=False)
    composed.pop("tracking", None)
    composed.pop("hydra", None)
    # Re-running is the reproducibility check: refit every seed rather than report "already finished".
    composed["resume"] = False
    body = {"defaults": [{f"override /{group}": option} for group, option in choices.items()], **composed}
    lines = ["# @package _global_", *[f"# {h}" for h in header]]
    return "\n".join(lines) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body))


def write_experiment(text: str, out_dir: Path, name: str) -> Path:
    """Write the promoted experiment as ``<out_dir>/promoted_<name>.yaml`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"promoted_{name}.yaml"
    path.write_text(text)
    return path


def stamp() -> str:
    """UTC time for provenance comments."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
