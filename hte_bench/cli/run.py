"""Command line: ``hte-bench [-m] key=value ...`` — a Hydra app; heavy libraries load only when a job runs."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from hte_bench.errors import ConfigError

log = logging.getLogger("hte_bench")


def conf_dir() -> Path:
    """``conf/`` beside the package in a wheel, or at the repository top in a source/editable install."""
    here = Path(__file__).resolve().parents[1]  # the hte_bench package
    packaged = here / "conf"
    return packaged if packaged.is_dir() else here.parent / "conf"


_CONF = str(conf_dir())
_errors: list[str] = []


def _user_config_dirs(args: list[str]) -> list[Path]:
    """Folders whose group options are valid too: ./conf (on Hydra's search path) and ``--config-dir``s."""
    dirs = [Path.cwd() / "conf"]
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(Path(args[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def group_options(group: str, extra_dirs: list[Path] = ()) -> list[str]:
    """The option names of a config group, from its folder under conf/ and any user config folders."""
    return sorted({p.stem for d in [Path(_CONF), *extra_dirs] for p in (d / group).glob("*.yaml")})


def check_group_overrides(args: list[str]) -> None:
    """Reject ``group=unknown`` before Hydra starts, in one line listing the allowed options."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    extra = _user_config_dirs(args)
    groups = {p.name for d in [Path(_CONF), *extra] if d.is_dir() for p in d.iterdir() if p.is_dir()}
    candidates = [a for a in args if "=" in a and not a.startswith("-") and not Path(a).exists()]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception:
        return  # Hydra reports syntax errors itself
    for ov in overrides:
        group = ov.key_or_group.lstrip("+~")
        if group not in groups or ov.is_delete():
            continue
        try:
            values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]
        except Exception:
            continue  # glob() and interval() need Hydra's config loader: Hydra checks those itself
        allowed = group_options(group, extra)
        for value in values:
            if value not in allowed:
                raise ConfigError(f"{group}={value} is not an option; allowed {group} options: {', '.join(allowed)}")


def _job_log() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        return str(Path(hc.runtime.output_dir) / f"{hc.job.name}.log")
    except Exception:
        return None


def _choices() -> dict[str, str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return {k: v for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    except Exception:
        return {}


@hydra.main(version_base="1.3", config_path=_CONF, config_name="config")
def app(cfg: DictConfig) -> float:
    """One Hydra job: run one configuration and return ``optimized_metric`` for sweepers."""
    from hte_bench.runner import run

    for handler in logging.getLogger().handlers:
        handler.flush()
    try:
        summary = run(cfg, choices=_choices(), job_log=_job_log())
    except ConfigError as err:
        # One line, nothing written; the sweep's other jobs go on and the exit code says it failed.
        print(f"hte-bench: error: {err}", file=sys.stderr, flush=True)
        _errors.append(str(err))
        return float("nan")
    return float(summary.get(str(cfg.optimized_metric), float("nan")))


def main() -> None:
    """Console entry point: validate group choices, run the Hydra app, exit non-zero on any input error."""
    try:
        check_group_overrides(sys.argv[1:])
    except ConfigError as err:
        print(f"hte-bench: error: {err}", file=sys.stderr)
        sys.exit(2)
    local = Path.cwd() / "conf"
    if local.is_dir() and local.resolve() != Path(_CONF).resolve() and not any(
            a.startswith(("hydra.searchpath", "+hydra.searchpath")) for a in sys.argv[1:]):
        # ./conf extends every group (promoted experiments land there). Added only when it exists:
        # Hydra warns about a missing search path on every job.
        sys.argv.insert(1, f"hydra.searchpath=[file://{local}]")
    app()
    if _errors:
        sys.exit(2)


if __name__ == "__main__":
    main()
