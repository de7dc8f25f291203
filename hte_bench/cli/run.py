"""Command line: ``hte-bench [-m] key=value ...`` — a Hydra app; heavy libraries load only when a job runs."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from omegaconf import DictConfig

from hte_bench.cli import current_folder_importable
from hte_bench.errors import ConfigError, interrupted

log = logging.getLogger("hte_bench")


def conf_dir() -> Path:
    """``conf/`` beside the package in a wheel, or at the repository top in a source/editable install."""
    here = Path(__file__).resolve().parents[1]  # the hte_bench package
    packaged = here / "conf"
    return packaged if packaged.is_dir() else here.parent / "conf"


_CONF = str(conf_dir())
_errors: list[str] = []
_jobs = [0]  # jobs this process ran
_all_failed: list[str] = []  # configurations whose every seed failed: the exit code says so (1)
_failed_outputs: list[Path] = []  # Hydra output folders of jobs refused for bad input: removed at exit


def group_options(group: str) -> list[str]:
    """The option names of one of hte-bench's own config groups (its folder under conf/)."""
    return sorted(p.stem for p in (Path(_CONF) / group).glob("*.yaml"))


def _hydra_runtime():
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get()
    except Exception:  # called outside a Hydra job (tests composing configs)
        return None


def _job_log() -> str | None:
    hc = _hydra_runtime()
    return None if hc is None else str(Path(hc.runtime.output_dir) / f"{hc.job.name}.log")


def _choices() -> dict[str, str]:
    hc = _hydra_runtime()
    return {} if hc is None else {k: v for k, v in hc.runtime.choices.items() if v is not None}


def own_generator(cfg: DictConfig, choices: dict[str, str], overrides: list[str]) -> None:
    """A user's ``data._target_``: keep only the knobs the user gave, not the default group's (in place).

    The default data group (engagement) would otherwise pass its ``noise``/``p_treat`` to a function that
    does not take them, and the runs would be labelled with the group's name.
    """
    from omegaconf import OmegaConf, open_dict

    target = str(OmegaConf.select(cfg, "data._target_", default="") or "")
    if not target or target.startswith("hte_bench.data."):
        return
    given = {}
    for item in overrides:
        key, _, _ = item.lstrip("+~").partition("=")
        if key.startswith("data.") and key != "data._target_" and "=" in item and not item.startswith("~"):
            name = key[len("data."):]
            given[name] = OmegaConf.select(cfg, key)
    with open_dict(cfg):
        cfg.data = OmegaConf.create({"_target_": target, **given})
    choices.pop("data", None)


@hydra.main(version_base="1.3", config_path=_CONF, config_name="config")
def app(cfg: DictConfig) -> float:
    """One Hydra job: run one configuration and return ``optimized_metric`` (as its registry says) for sweepers."""
    from hte_bench import config as C
    from hte_bench.evaluation import registry

    for handler in logging.getLogger().handlers:
        handler.flush()
    choices = _choices()
    hc = _hydra_runtime()
    _jobs[0] += 1
    try:
        own_generator(cfg, choices, list(hc.overrides.task) if hc is not None else [])
        _needs_multirun(choices, hc)
        registry.load_modules(cfg.get("metric_modules"))  # the user's metrics, before the objective is judged
        registry.objective(str(cfg.optimized_metric))  # refuses a context metric before any fit
        C.validate(cfg)  # before the runner's imports (MLflow, pandas): a typo is refused in a second
        _check_seed_count(cfg, hc)
        C.check_packages(cfg, choices)
        from hte_bench.runner import run

        summary = run(cfg, choices=choices, job_log=_job_log())
        if not summary.get("n_seeds_ok") and summary.get("n_seeds_failed"):
            _all_failed.append(str(summary.get("_label", "?")))  # as its log lines name it
    except ConfigError as err:
        # One line, nothing written; the sweep's other jobs go on and the exit code says it failed. In a sweep
        # the line names the job, as Hydra's launch line does: the message alone may not say which it was.
        from hydra.types import RunMode

        job = (f"job #{hc.job.num} ({' '.join(hc.overrides.task)}): "
               if hc is not None and hc.mode == RunMode.MULTIRUN else "")
        print(f"hte-bench: error: {job}{err}", file=sys.stderr, flush=True)
        _errors.append(str(err))
        if hc is not None:
            _failed_outputs.append(Path(hc.runtime.output_dir))
        return float("nan")
    from hydra.types import RunMode

    failed = int(summary.get("n_seeds_failed", 0) or 0)
    if failed and hc is not None and hc.mode == RunMode.MULTIRUN:
        # The aggregate is over the seeds that finished: a configuration that fails on the hardest seeds would
        # look better than one that fitted them all. A sweeper gets no value for it (Optuna: a FAILED trial).
        log.warning(
            "objective %s: none returned to the sweeper — %d of the configuration's seeds failed, and its value over "
            "the others is not comparable with configurations that fitted every seed", cfg.optimized_metric, failed)
        return float("nan")
    return registry.objective_value(str(cfg.optimized_metric), summary, float(cfg.alpha))


def _check_seed_count(cfg: DictConfig, hc) -> None:
    """An n_seeds typed on the command line that a seeds list (typed too, or from an experiment file such as a
    promoted one) would silently override: refused, naming both."""
    typed = {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in (hc.overrides.task if hc else [])
             if "=" in o}
    seeds = cfg.get("seeds")
    if "n_seeds" in typed and seeds is not None and int(cfg.n_seeds) != len(seeds):
        where = "given too" if "seeds" in typed else "from the config, e.g. an experiment file"
        raise ConfigError(f"n_seeds={cfg.n_seeds} would not be used: seeds={list(seeds)} ({where}) names the seeds; "
                          f"give one of them — for {cfg.n_seeds} seeds from 0 write seeds=null n_seeds={cfg.n_seeds}")


def _needs_multirun(choices: dict[str, str], hc) -> None:
    """A tuning grid or search without ``-m`` would quietly fit one default configuration: refuse it."""
    from hydra.types import RunMode

    if hc is None or hc.mode == RunMode.MULTIRUN:
        return
    for group, what in (("grid", "a tuning grid"), ("hparams_search", "an Optuna search")):
        if choices.get(group):
            raise ConfigError(f"{group}={choices[group]} is {what}: it runs with -m (hte-bench -m {group}="
                              f"{choices[group]} ...); without -m only one configuration would be fitted")


def hydra_error_line(err: Exception) -> str | None:
    """Hydra's multi-line composition errors as one line naming the key or group and the fix; None if not one."""
    import difflib
    import re

    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, \
        OverrideParseException

    yaml_error = _yaml_error(err)
    if yaml_error is not None:
        return yaml_error
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options is not None:
        group, _, value = err.missing_cfg_file.rpartition("/")
        close = difflib.get_close_matches(value, err.options, n=1)
        hint = f" (did you mean {group}={close[0]}?)" if close else ""
        return f"{group}={value} is not an option{hint}; allowed {group} options: {', '.join(err.options)}"
    if isinstance(err, ConfigCompositionException):
        cause = err.__cause__
        text = " ".join(str(err).split())
        twice = re.match(r"Multiple values for ([\w/.]+)\. To override a value use 'override \1: (.+)'", text)
        if twice:  # +group=option for a group the defaults list already has (null included)
            return f"+{twice[1]}={twice[2]}: {twice[1]} is already in the defaults; write {twice[1]}={twice[2]} (without +)"
        key = getattr(cause, "full_key", None)
        parent = getattr(cause, "parent_node", None)
        wanted = re.search(r"override '([^']+)'", text)
        if key and wanted and wanted.group(1) != key and wanted.group(1).startswith(f"{key}."):
            # The section itself is gone (``~data`` removed the group): name the override the user typed.
            gone = f"{key} was removed (~{key}?)" if key in _groups() else f"{key} is not a key of this config"
            fix = (f"; or leave out ~{key}: {key}._target_=my_module.generate {key}.n=2000 passes only the "
                   "knobs you give" if key == "data" else "")
            return f"{wanted.group(1)}: {gone}; to add it write +{wanted.group(1)}=...{fix}"
        if key and parent is not None and hasattr(parent, "keys"):
            leaf = str(key).rsplit(".", 1)[-1]
            close = difflib.get_close_matches(leaf, [str(k) for k in parent.keys()], n=2)
            prefix = str(key).rsplit(".", 1)[0] + "." if "." in str(key) else ""
            add = f"to add a new key write +{key}=..."
            if close:
                return f"{key} is not a key of this config; did you mean {' or '.join(prefix + c for c in close)}? ({add})"
            # No near name (data.sample_size for data.n): the keys there are, which a "+" would not replace.
            keys = [prefix + str(k) for k in parent.keys() if not str(k).startswith("_")]
            there = f"; the keys there: {', '.join(keys)}" if 0 < len(keys) <= 30 else ""
            return f"{key} is not a key of this config{there}; {add}"
        return text
    if isinstance(err, (OverrideParseException, HydraException)):
        return " ".join(str(err).split())
    if isinstance(err, ValueError) and str(err).startswith("Config group override must be"):
        return _null_group_line()
    return None


def _yaml_error(err: Exception) -> str | None:
    """A YAML syntax error in a config file (the user's own, often), raised or wrapped: file, line, column."""
    import yaml

    while err is not None and not isinstance(err, yaml.YAMLError):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    return f"{where}: YAML syntax error: {problem} (check the indentation and the 'key: value' pairs there)"


def _groups() -> list[str]:
    """hte-bench's own config groups (the folders of conf/)."""
    return sorted(p.name for p in Path(_CONF).iterdir() if p.is_dir())


def _null_group_line() -> str:
    """``data=null`` on the command line: Hydra cannot unset a group there; say what to write instead."""
    group = next((a.split("=", 1)[0].lstrip("+") for a in sys.argv[1:] if a.endswith("=null")
                  and a.split("=", 1)[0].lstrip("+") in _groups()), "GROUP")
    from omegaconf import OmegaConf

    defaults = [d for d in OmegaConf.load(Path(_CONF) / "config.yaml").defaults if not isinstance(d, str)]
    unset = any(group in d and d[group] is None for d in defaults)
    fix = ("for your own generator keep the group and write data._target_=my_module.generate data.n=2000 "
           "(only the knobs you give are passed)" if group == "data"
           else f"{group} is unset by default, so leave {group}=null out" if unset
           else f"choose one of its options: {', '.join(group_options(group))}")
    return f"{group}=null: a config group cannot be set to null on the command line; {fix}"


# Hydra's options that take a value (the next argument unless written --option=value); --info's is optional.
_VALUED = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
           "--experimental-rerun"}
_INFO = ({"--info", "-i"}, {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})


def options_first(args: list[str]) -> list[str]:
    """Hydra's options (with their values) before the overrides: Hydra's argparse reads overrides only up to
    the first option, so ``hte-bench data.n=500 --config-dir my_conf estimator=mine`` stopped at estimator=mine
    ("unrecognized arguments"). An override never starts with "-"."""
    longs = sorted(o for o in (*_VALUED, *_INFO[0]) if o.startswith("--"))
    options, overrides, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            overrides.append(arg)
            i += 1
            continue
        # argparse takes a long option's unique abbreviation (--config-di): so must this
        matches = [o for o in longs if o.startswith(arg)] if arg.startswith("--") else []
        name = matches[0] if len(matches) == 1 else arg
        if name in _INFO[0]:  # a bare --info must not take the override after it as its value
            has_value = i + 1 < len(args) and args[i + 1] in _INFO[1]
            options += [arg, args[i + 1]] if has_value else [f"{name}=all"]
            i += 2 if has_value else 1
        elif name in _VALUED:
            options += args[i:i + 2]
            i += 2
        else:
            options.append(arg)
            i += 1
    return options + overrides


def _interrupted() -> NoReturn:
    """Ctrl-C: close open runs KILLED, say so in one line, exit 130 as a shell expects."""
    from hte_bench.callbacks import mark_interrupted

    mark_interrupted()
    print("hte-bench: interrupted; the same command again resumes (finished seeds are kept)", file=sys.stderr)
    sys.exit(130)


def main() -> None:
    """Console entry point: run the Hydra app; input errors are one line and a non-zero exit."""
    current_folder_importable()  # a user's generator or metric module in the current folder
    sys.argv[1:] = options_first(sys.argv[1:])
    # Hydra's errors reach us as exceptions (not its multi-line report) so they can be said in one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    before = set(os.listdir("."))  # folders that were here already are never removed
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C: open runs are closed KILLED on the way out; no traceback
        _interrupted()
    except ConfigError as err:  # raised before any job (the sweep's checks)
        print(f"hte-bench: error: {err}", file=sys.stderr)
        _refused(before)
    except Exception as err:
        if interrupted(err):  # Ctrl-C, and a library's clean-up raised its own error on the way out
            _interrupted()
        line = hydra_error_line(err)
        if line is None:
            raise
        print(f"hte-bench: error: {line}", file=sys.stderr)
        _refused(before)
    from hte_bench.callbacks import SUMMARY_FAILED

    if SUMMARY_FAILED:  # the configuration runs are in the store; the sweep's ranking and best are not
        print(f"hte-bench: error: the sweep's summary failed ({SUMMARY_FAILED[0]}); its configuration runs are "
              "kept: hte-bench-leaderboard ranks them", file=sys.stderr)
    if _all_failed:  # runs were logged (FAILED, with tracebacks); a script must still see that nothing fitted
        print(f"hte-bench: error: every seed failed in {len(_all_failed)} configuration(s): "
              f"{', '.join(_all_failed)}; see the error tag and traceback.txt of their seed runs", file=sys.stderr)
    if _errors:
        if len(_errors) == _jobs[0]:  # every job refused: no claims database left behind either
            from hte_bench.tracking.claims import discard_unused

            discard_unused()
        _remove_failed_outputs(before)
        sys.exit(2)
    if _all_failed or SUMMARY_FAILED:
        sys.exit(1)  # 2 (refused input) wins when a sweep had both


def _refused(before: set[str]) -> None:
    """Exit 2 after a one-line input error, leaving no trace of this run: a sweep that had started (e.g. a job's
    config file does not parse) loses its empty sweep run and output folder."""
    from hte_bench.callbacks import mark_refused
    from hte_bench.tracking.claims import discard_unused

    discard_unused()  # a claims database this run created and never used
    for folder in map(Path, mark_refused()):
        if folder.is_dir() and all(p.name == "multirun.yaml" for p in folder.iterdir()):  # no job got to run
            _failed_outputs.append(folder)
    _remove_failed_outputs(before)
    sys.exit(2)


def _remove_failed_outputs(before: set[str]) -> None:
    """Delete the Hydra output folders of refused jobs and the folders above them left empty (up to the
    working folder; a top-level folder only if this run created it, per ``before``)."""
    import shutil

    cwd = Path.cwd().resolve()
    for out in _failed_outputs:
        shutil.rmtree(out, ignore_errors=True)
        folder = out.resolve().parent
        while folder != cwd and cwd in folder.parents:
            # A sweep folder holding only Hydra's multirun.yaml is empty for the user.
            left = [p for p in folder.iterdir() if p.name != "multirun.yaml"] if folder.is_dir() else None
            if left or (folder.parent == cwd and folder.name in before):
                break
            shutil.rmtree(folder, ignore_errors=True)
            folder = folder.parent


if __name__ == "__main__":  # as the console script runs it (hte_bench.cli._entry sets the process up)
    from hte_bench.cli import run_main

    run_main()
