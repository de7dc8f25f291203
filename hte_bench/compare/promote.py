"""Promotion decisions and the reproducible config file of the winner (pure: no MLflow here)."""
from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Optional

import pandas as pd
from omegaconf import OmegaConf

from hte_bench.compare.leaderboard import MIXED, readable_seeds
from hte_bench.compare.study import KIND_NOTES, PER_UNIT_VALID
from hte_bench.errors import ConfigError
from hte_bench.evaluation import registry
from hte_bench.tracking.notes import fmt


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


_f = partial(fmt, digits=4)  # a number as every board prints it (4 significant digits), '–' when missing


def _n(row: pd.Series) -> str:
    """The seeds a gated figure is over: those the board compared the configuration on (a resume's extra
    seeds are not what it was selected on), or its own finished seeds where the seed runs were not read."""
    on = row.get("context_seeds")
    if isinstance(on, str) and on and not on.startswith("own seeds"):
        return f"seeds {on}"
    n = row.get("seeds_ok")
    return f"{int(n)} seeds" if n is not None and math.isfinite(float(n)) else "seeds unknown"


def _ate_coverage(row: pd.Series) -> tuple[float, str]:
    """The ATE coverage rate and how it reads: value, Wilson interval at the run's level, number of seeds —
    or why there is none."""
    rate, kind = row.get("ate_coverage_rate"), row.get("ate_interval_kind", "unknown")
    if rate is None or not math.isfinite(float(rate)):
        if kind == "none":
            return math.nan, "no ATE interval (interval kind none), so no ATE coverage"
        return math.nan, f"no ATE coverage rate logged (ATE interval kind {kind})"
    level = registry.level_text(row.get('alpha', 0.05))
    return float(rate), (f"ATE coverage {_f(rate)} ({level} Wilson [{_f(row.get('ate_coverage_rate_ci_lower'))}, "
                         f"{_f(row.get('ate_coverage_rate_ci_upper'))}], {_n(row)})")


def _gates(row: pd.Series, group: pd.DataFrame, gates: Gates) -> tuple[list[str], list[str]]:
    """(failures, passes) of one candidate, each a readable sentence with the gated value."""
    out, passed = [], []
    if gates.min_ate_coverage is not None:
        rate, text = _ate_coverage(row)
        if not math.isfinite(rate):
            out.append(text)
        elif rate < gates.min_ate_coverage:
            out.append(f"{text} < {_f(gates.min_ate_coverage)}")
        else:
            passed.append(f"{text} ≥ {_f(gates.min_ate_coverage)}")
    if gates.min_cate_coverage is not None:
        kind, cover = row.get("interval_kind", "unknown"), row.get("cate_coverage_test_mean")
        text = f"per-unit coverage {_f(cover)} (mean over {_n(row)}, kind {kind})"
        if kind not in PER_UNIT_VALID:  # a repeated ATE interval or a dishonest forest proves nothing per unit
            out.append(f"per-unit coverage of kind {kind} is not evidence of valid per-unit intervals "
                       f"({KIND_NOTES.get(kind, kind)})")
        elif cover is None or not math.isfinite(cover):
            out.append(f"no per-unit coverage logged (kind {kind})")
        elif cover < gates.min_cate_coverage:
            out.append(f"{text} < {_f(gates.min_cate_coverage)}")
        else:
            passed.append(f"{text} ≥ {_f(gates.min_cate_coverage)}")
    if gates.max_failed_seeds is not None:
        failed = _count(row.get("seeds_failed"))
        if failed is None:  # an unknown count is no evidence that it is small
            out.append("its failed-seed count is not logged")
        else:
            (out if failed > gates.max_failed_seeds else passed).append(
                f"{failed} failed seeds {'>' if failed > gates.max_failed_seeds else '≤'} {gates.max_failed_seeds}")
    if gates.min_seeds is not None:  # the seeds it was selected on (common to the condition), not all it ran
        ok = _count(row.get("n_compared", row.get("seeds_ok")))
        if ok is None:
            out.append("the number of seeds it was compared on is not known")
        else:
            (out if ok < gates.min_seeds else passed).append(
                f"{ok} seeds compared on ({row.get('compared_on_seeds', '?')}) "
                f"{'<' if ok < gates.min_seeds else '≥'} {gates.min_seeds}")
    if gates.require_significance:
        if row["vs_best"] != "best":
            out.append("not the best configuration (significance required)")
        else:
            unresolved = group[group["vs_best"].isin(["tied", "untested", MIXED])]
            if len(unresolved):
                def why(r) -> str:  # the adjusted p-value of the paired test, or why there is none
                    p = getattr(r, "p_vs_best_adj", float("nan"))
                    return f"adjusted p = {p:.2g}" if math.isfinite(p) else "untested"

                out.append(f"not significantly better than {len(unresolved)} other configuration(s) on seeds "
                           f"{row.get('compared_on_seeds', '?')}: "
                           + ", ".join(f"{r.estimator} {r.overrides} ({why(r)})".replace("  ", " ").strip()
                                       for r in unresolved.itertuples()))
            else:
                passed.append(f"significantly better than every other configuration on seeds "
                              f"{row.get('compared_on_seeds', '?')}")
    return out, passed


def confirmation_gates(summary: dict, tags: dict, gates: Gates, alpha: float) -> tuple[list[str], list[str]]:
    """(failures, passes) of the gates a configuration's own figures decide — ATE and per-unit coverage,
    failed seeds — on its confirmation run (fresh seeds): passed on the seeds it was selected on, a coverage
    gate may still fail where nothing was chosen. ``tags``: the confirmation run's (its interval kinds)."""
    row = pd.Series({**{k: summary.get(k) for k in ("ate_coverage_rate", "ate_coverage_rate_ci_lower",
                                                     "ate_coverage_rate_ci_upper", "cate_coverage_test_mean")},
                     "seeds_ok": summary.get("n_seeds_ok"), "seeds_failed": summary.get("n_seeds_failed"),
                     "interval_kind": tags.get("interval_kind") or "unknown",
                     "ate_interval_kind": tags.get("ate_interval_kind") or "unknown", "alpha": alpha,
                     # the fresh seeds, named as the selection's gates name theirs
                     "context_seeds": readable_seeds(tags["seeds"]) if tags.get("seeds") else None})
    own = Gates(min_ate_coverage=gates.min_ate_coverage, max_failed_seeds=gates.max_failed_seeds,
                min_cate_coverage=gates.min_cate_coverage)
    return _gates(row, pd.DataFrame([row]), own) if own != Gates() else ([], [])


def _count(value) -> Optional[int]:
    """A board's count cell as an int; None when it is missing (no such column, NaN)."""
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None


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
                          f"choose one with --condition" + ("" if board["data"].nunique() == 1 else " (or --data)"))
    decision = Decision(winner=None)
    for _, row in board.sort_values("rank", kind="stable").iterrows():
        label = f"{row['estimator']} {row['overrides']} [{row['config_hash']}]".replace("  ", " ")
        failed, passed = _gates(row, board, gates)
        if row.get("vs_best") == "unranked: no common seed":  # nothing to choose on
            failed = ["not ranked: the configurations of this condition share no finished seed"] + failed
        elif pd.isna(row.get("rank")):  # no value of the metric to choose it on: never promoted past the ranked
            failed = [f"not ranked ({row.get('vs_best') or 'no value of the metric'})"] + failed
        unset = gates == Gates()  # then the best-ranked configuration wins; "passes every gate" would flatter it
        decision.reasons[label] = failed or [("no gates set" if unset else "passes every gate")
                                             + (": " + "; ".join(passed) if passed else "") + _note(row, gates)]
        if not failed and decision.winner is None:
            decision.winner = row
    return decision


_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_model_name(name: str) -> str:
    """Model names become file names (promoted_<name>.yaml), so keep them to letters, digits, _ . -"""
    if not name or not _NAME.match(name):
        raise ConfigError(f"--name={name!r} is not allowed; use letters, digits, '_', '.' or '-'")
    return name


def experiment_config(config_yaml: str, choices: dict[str, str], header: list[str],
                      seeds: Optional[list[int]] = None) -> str:
    """A ``# @package _global_`` experiment file that recomposes the logged configuration exactly.

    The defaults select the logged group options (data, estimator, nuisance models), then the logged
    values (interpolations such as ``${seed}`` kept) are merged over them; tracking is left to the user.
    ``seeds``: the seeds it was selected on, so a re-run reproduces the selection's figures (the logged
    config has the seeds of whichever command reached the run last).
    """
    composed = OmegaConf.to_container(OmegaConf.create(config_yaml), resolve=False)
    composed.pop("tracking", None)
    composed.pop("hydra", None)
    if seeds:
        composed["seeds"], composed["n_seeds"] = [int(s) for s in seeds], len(seeds)
    # Re-running is the reproducibility check: refit every seed rather than report "already finished".
    composed["resume"] = False
    body = {"defaults": [{f"override /{group}": option} for group, option in choices.items()], **composed}
    lines = ["# @package _global_", *[f"# {h}" for h in header]]
    return "\n".join(lines) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body))


def experiment_file(name: str) -> str:
    """The promoted experiment's file name (``+experiment=promoted_<name>``)."""
    return f"promoted_{name}.yaml"


def write_experiment(text: str, out_dir: Path, name: str) -> Path:
    """Write the promoted experiment as ``<out_dir>/promoted_<name>.yaml`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / experiment_file(name)
    path.write_text(text)
    return path


def stamp() -> str:
    """UTC time for provenance comments."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
