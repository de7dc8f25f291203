"""Puts ``./conf`` of the working directory on hte-bench's config search path (promoted experiments,
a user's own estimators and grids) through Hydra's SearchPathPlugin — no command-line edits."""
from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class HteBenchSearchPathPlugin(SearchPathPlugin):
    """Appends ``file://<cwd>/conf`` when hte-bench's own conf/ is the primary config folder."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        local = Path.cwd() / "conf"
        if not local.is_dir():
            return  # Hydra warns about a missing search-path folder on every job
        ours = [e.path for e in search_path.get_path() if e.provider == "main"]
        # Only for hte-bench (other Hydra apps in this environment keep their path), and never twice.
        if not ours or not _is_hte_bench_conf(ours[0]) or _same(ours[0], local):
            return
        if any(_same(e.path, local) for e in search_path.get_path()):
            return
        # Appended: a user's ./conf adds options to every group; hte-bench's own files are found first,
        # so a stray ./conf/config.yaml cannot replace the primary config.
        search_path.append(provider="hte-bench-cwd", path=f"file://{local}")


def _strip(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _same(path: str, local: Path) -> bool:
    try:
        return Path(_strip(path)).resolve() == local.resolve()
    except OSError:
        return False


def _is_hte_bench_conf(path: str) -> bool:
    p = Path(_strip(path))
    return (p / "config.yaml").is_file() and (p / "estimator").is_dir() and (p / "data").is_dir() \
        and "hte-bench" in (p / "config.yaml").read_text(errors="replace")[:400]
