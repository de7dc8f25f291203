"""The sweep itself: Hydra override grammar → Optuna distributions, and the ask / launch / tell loop.

Imported only when a sweep starts (Hydra's plugin scanner skips modules whose name starts with ``_``).
Uses only Optuna's public ask/tell API (``Study.ask(fixed_distributions=...)``, ``Study.tell``), which
is the same in Optuna 3, 4 and 5.
"""
from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hte_bench.config import flatten_dict, is_int
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
# Trials that count toward n_trials: a FAILED one (e.g. a typo, fixed since) is run again on resume.
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
KNOWN_TAGS = {"log", "int"}

Choice = Union[None, bool, int, float, str]


class SweeperConfigError(CompactHydraException, ValueError):
    """A mistake in the sweeper's settings or search space; Hydra prints just the message."""


# --------------------------------------------------------------------------------------------------
# search space


def _choice_value(x: Any) -> Choice:
    """A choice element as Optuna stores it: numbers and booleans as such, anything else as the
    override-grammar string that reproduces it (quoted strings keep their quotes, null stays null)."""
    if isinstance(x, (bool, int, float)):
        return x
    return Transformer.str(x)


def format_value(value: Any) -> str:
    """A value as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, (dict, DictConfig)):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def distribution_from_override(override: Override) -> Optional[BaseDistribution]:
    """The Optuna distribution of a sweep override; None for a plain value (a fixed override).

    choice(a,b,c) and a,b,c (and glob(...) over a config group) → CategoricalDistribution
    range(lo,hi[,step]) → IntDistribution(step) for ints, else FloatDistribution(step); like Python's and
        Hydra's basic sweeper's range, ``hi`` is excluded: the distribution spans the values the basic
        sweeper would enumerate. shuffle(range(...)) → CategoricalDistribution of those values.
    interval(lo,hi) → FloatDistribution; IntDistribution when the bounds are ints, i.e. int(interval(lo,hi))
        or tag(int, interval(lo,hi))
    tag(log, interval(...)) / tag(log, range(...)) → the same with log=True
    """
    if not override.is_sweep_override():
        return None
    key = override.get_key_element()
    value = override.value()
    tags = set(getattr(value, "tags", None) or ())
    unknown = tags - KNOWN_TAGS
    if unknown:
        raise SweeperConfigError(
            f"{key}: unknown tag(s) {sorted(unknown)}; this sweeper knows tag(log, ...) and tag(int, ...)")
    if override.is_delete():
        raise SweeperConfigError(f"{key}: a delete override cannot be swept")

    if override.is_choice_sweep():
        if tags:
            raise SweeperConfigError(f"{key}: tags apply to interval(...) and range(...), not to a choice")
        choices: List[Choice] = []
        for x in override.sweep_iterator(transformer=Transformer.identity):
            c = _choice_value(x)
            if not any(type(c) is type(o) and c == o for o in choices):  # keep 1 and true apart
                choices.append(c)
        if not choices:
            raise SweeperConfigError(f"{key}: empty choice")
        return CategoricalDistribution(choices)

    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if "int" in tags:
            raise SweeperConfigError(
                f"{key}: tag(int, ...) applies to interval(...); a range(...) of ints is already integer")
        values = list(value.range())
        if not values:
            raise SweeperConfigError(f"{key}: range({value.start}, {value.stop}, {value.step}) is empty")
        if value.shuffle:
            if tags:
                raise SweeperConfigError(f"{key}: shuffle(range(...)) is a choice and takes no tags")
            return CategoricalDistribution(values)
        log_scale = "log" in tags
        if is_int(value.start) and is_int(value.stop) and is_int(value.step):
            step = abs(int(value.step))
            if log_scale and step != 1:
                raise SweeperConfigError(
                    f"{key}: tag(log, range(...)) needs step 1 (Optuna samples log-scaled ints with step 1)")
            return IntDistribution(int(min(values)), int(max(values)), log=log_scale, step=step)
        if log_scale:
            raise SweeperConfigError(f"{key}: a float range has a step; use tag(log, interval(lo, hi)) for a log scale")
        return FloatDistribution(float(min(values)), float(max(values)), step=abs(float(value.step)))

    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        assert value.start is not None and value.end is not None
        log_scale = "log" in tags
        if "int" in tags or (is_int(value.start) and is_int(value.end)):
            if not (float(value.start).is_integer() and float(value.end).is_integer()):
                raise SweeperConfigError(
                    f"{key}: an integer interval needs integer bounds, got {value.start}, {value.end}")
            return IntDistribution(int(value.start), int(value.end), log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)

    raise SweeperConfigError(f"{key}: sweep type {override.value_type} is not supported by the hte_optuna sweeper")


def _param_name(override: Override) -> str:
    """The parameter's name in the study: the config key or group, without +/++ (and @package if any)."""
    return override.key_or_group if override.package is None else f"{override.key_or_group}@{override.package}"


@dataclass
class SearchSpace:
    """Searched parameters (name → distribution) and fixed overrides, in command-line order."""

    distributions: Dict[str, BaseDistribution] = field(default_factory=dict)
    # name → ("fixed", override string) or ("search", key element with its +/++ prefix)
    entries: Dict[str, Tuple[str, str]] = field(default_factory=dict)

    @property
    def fixed(self) -> List[str]:
        return [text for kind, text in self.entries.values() if kind == "fixed"]

    def overrides(self, params: Mapping[str, Any]) -> List[str]:
        """The overrides of one trial: every fixed override, and ``key=value`` for each searched one."""
        out = []
        for name, (kind, text) in self.entries.items():
            out.append(text if kind == "fixed" else f"{text}={format_value(params[name])}")
        return out


def search_space_from_overrides(overrides: Sequence[Override]) -> SearchSpace:
    """Later overrides of the same key win (the command line comes after hydra.sweeper.params)."""
    space = SearchSpace()
    for override in overrides:
        name = _param_name(override)
        dist = distribution_from_override(override)
        space.entries.pop(name, None)
        space.distributions.pop(name, None)
        if dist is None:
            assert override.input_line is not None
            space.entries[name] = ("fixed", override.input_line)
        else:
            space.entries[name] = ("search", override.get_key_element())
            space.distributions[name] = dist
    return space


def flatten_params(params: Any) -> Dict[str, Any]:
    """hydra.sweeper.params as ``{dotted.key: value}``. ``+hydra.sweeper.params.a.b=...`` on the command
    line nests (``{a: {b: ...}}``); keys written with dots in YAML stay flat; both mean ``a.b``."""
    if params is None:
        return {}
    if isinstance(params, DictConfig):
        params = OmegaConf.to_container(params, resolve=True)
    return flatten_dict(params)


def params_to_overrides(params: Any) -> List[str]:
    """A search space config (``hydra.sweeper.params``) as Hydra override strings (``key=choice(a,b)``)."""
    return [f"{k}={format_value(v)}" for k, v in flatten_params(params).items()]


def parse_search_space(arguments: Sequence[str], config_loader: Any = None) -> SearchSpace:
    """The Optuna search space and fixed values of override strings, parsed as Hydra parses them."""
    parser = OverridesParser.create(config_loader=config_loader)
    return search_space_from_overrides(parser.parse_overrides(list(arguments)))


# --------------------------------------------------------------------------------------------------
# helpers


def objective_value(ret: JobReturn) -> Tuple[Optional[float], Optional[str]]:
    """(value, None) for a usable result; (None, why) when the job raised or returned None/NaN/inf/junk."""
    try:
        value = ret.return_value  # re-raises the job's exception
    except Exception as err:  # noqa: BLE001 — any job failure is a failed trial
        return None, f"raised {type(err).__name__}: {err}"
    if value is None:
        return None, "returned None"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"returned {value!r}, not a number"
    if not math.isfinite(number):  # hte-bench's job says why in its log line (a failed seed, no such metric)
        return None, f"returned {number}: see the job's log line above"
    return number, None


def describe(dist: BaseDistribution) -> str:
    """A distribution in one short phrase, for the log."""
    if isinstance(dist, CategoricalDistribution):
        return "choice(" + ", ".join(format_value(c) for c in dist.choices) + ")"
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        kind = "int" if isinstance(dist, IntDistribution) else "float"
        has_step = dist.step is not None and (kind == "float" or dist.step != 1)
        extra = (", log" if dist.log else "") + (f", step={dist.step}" if has_step else "")
        return f"{kind}[{dist.low}, {dist.high}{extra}]"
    return repr(dist)


def _representatives(dist: BaseDistribution) -> List[Any]:
    """Values that exercise a distribution when composing configs: every choice, or both bounds."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return [dist.low] if dist.low == dist.high else [dist.low, dist.high]
    if isinstance(dist, FloatDistribution):
        return [dist.low] if dist.low == dist.high else [dist.low, dist.high]
    raise TypeError(f"unsupported distribution {dist!r}")


def _short(params: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in params.items()) + "}"


def _prepare_storage(storage: Optional[str]) -> Optional[str]:
    """Create the folder of a sqlite file (sqlite does not); other URLs are passed on unchanged."""
    from hte_bench.tracking.store import sqlite_path

    path = sqlite_path(storage)
    if path is not None:
        path.expanduser().parent.mkdir(parents=True, exist_ok=True)
    return storage


# Study attribute holding what its trials share (hte-bench jobs): trials on other data, seeds or objective
# are not comparable, and a sampler would learn from them as if they were.
IDENTITY = "hte_bench.identity"
# Keys a search must not vary: they change the data, the seeds or what a trial's value is, not the estimator.
NOT_SEARCHABLE = ("data", "n_seeds", "seeds", "seed", "alpha", "optimized_metric", "metric_modules")


def objective_direction(config: DictConfig) -> Optional[Tuple[str, str, str]]:
    """(metric, direction, why) for an hte-bench job's ``optimized_metric`` from its metric registry; None
    for another app, or when the objective is itself swept."""
    metric = config.get("optimized_metric") if isinstance(config, DictConfig) else None
    if metric is None or "," in str(metric):
        return None
    from hte_bench.evaluation import registry

    registry.load_modules(config.get("metric_modules"))
    direction, why = registry.objective(str(metric))
    return str(metric), direction, why


def resolve_direction(given: Optional[str], config: DictConfig) -> str:
    """The study's direction: the objective's (hte-bench's registry) unless given; a given one that
    contradicts the registry is refused (Optuna would pick the worst configuration as its best)."""
    wanted = objective_direction(config)
    if wanted is None:
        return given or "minimize"
    metric, direction, why = wanted
    if given is not None and given != direction:
        raise SweeperConfigError(
            f"hydra.sweeper.direction={given}, but optimized_metric={metric} is to {direction} ({why}): leave "
            f"hydra.sweeper.direction out (it follows optimized_metric) or set hydra.sweeper.direction={direction}")
    return direction


def refuse_condition_knobs(space: SearchSpace) -> None:
    """A search tunes an estimator on one data condition and one seed set: searching a data knob (or the
    seeds, alpha, the objective) would let Optuna pool conditions and call the easiest data the best."""
    for name, dist in space.distributions.items():
        key = name.split("@")[0]
        if key.split(".")[0] in NOT_SEARCHABLE:
            raise SweeperConfigError(
                f"hte_optuna: {key} is searched ({describe(dist)}), but a search compares trials on one data "
                f"condition and one seed set: give {key} one value and run one search per value, each with "
                f"its own hydra.sweeper.study_name (a -m sweep without hydra/sweeper=hte_optuna compares conditions "
                f"side by side)")


def seeds_text(seeds: Sequence[int]) -> str:
    from hte_bench.config import seed_list

    return f"seeds {seed_list(seeds)}"


def study_identity(config: DictConfig, job: DictConfig, searched: Sequence[str]) -> Optional[Dict[str, Any]]:
    """What every trial of an hte-bench search shares: data condition, seeds, objective, alpha, and the
    resolved settings outside the search space that change a trial's value (so ``estimator.model.cv=3`` and
    ``++estimator.model.cv=3``, or a default given explicitly, are the same search); None for another app.
    ``job`` is the search's first trial composed at each parameter's first choice or lower bound."""
    wanted = objective_direction(config)
    if wanted is None or job.get("data") is None:
        return None
    import json

    from hte_bench import config as C
    from hte_bench.cli.run import own_generator
    from hte_bench.data.conditions import condition_of
    from hte_bench.runner import data_name

    choices = {k: v for k, v in OmegaConf.to_container(job.hydra.runtime.choices).items() if v is not None}
    own_generator(job, choices, list(job.hydra.overrides.task))
    chash, label = condition_of(OmegaConf.to_container(job.data, resolve=True), data_name(job, choices))
    keys = [name.split("@")[0] for name in searched]

    def counted(key: str) -> bool:  # not a searched key or group, nor what the identity names apart
        root = key.split(".")[0]
        return root not in (*C._NOT_HASHED, *NOT_SEARCHABLE) and not any(
            key == k or key.startswith(f"{k}.") for k in keys)

    plain = OmegaConf.create(OmegaConf.to_container(job, resolve=False))
    plain.pop("hydra", None)  # its job.num is unset before launch, and its settings change no trial's value
    settings = {k: v for k, v in C.flatten(plain).items() if counted(k)}
    return {"searched": sorted(keys), "condition_hash": chash, "condition": label, "seeds": C.seeds_of(job),
            "optimized_metric": wanted[0], "alpha": float(job.get("alpha", 0.05)),
            "settings": json.loads(json.dumps(settings, default=str))}


def _digest(identity: Mapping[str, Any]) -> str:
    """Six characters that differ with any part of a study's identity: a suggested study name per search."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:6]


def check_identity(study: optuna.Study, identity: Optional[Dict[str, Any]], storage: Optional[str]) -> None:
    """Refuse to add trials to a stored study whose completed trials were run on other data, seeds,
    objective or fixed settings; record the identity when the study has no completed trial yet."""
    if identity is None:
        return
    recorded = study.user_attrs.get(IDENTITY)
    complete = any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if recorded is None or not complete:
        if recorded is None and complete:
            log.warning(f"hte_optuna: study {study.study_name!r} was made before hte-bench recorded its data "
                        "condition and seeds: its earlier trials cannot be checked against this search's")
        study.set_user_attr(IDENTITY, identity)
        return
    # The label is words (the hash compares); studies recorded before "searched" existed are not refused for it.
    differ = [k for k in identity if k != "condition" and recorded.get(k, identity[k]) != identity[k]]
    if not differ:
        return
    if "searched" in differ:  # a parameter fixed or added: its resolved settings would only restate that
        differ = ["searched"]
    old, new = recorded.get("settings"), identity["settings"]
    old = old if isinstance(old, dict) else {}
    changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))

    def said(ident: Mapping[str, Any], key: str) -> str:
        if key == "seeds":
            return seeds_text(ident.get(key, []))
        if key == "condition_hash":
            return f"condition '{ident.get('condition')}'"
        if key == "searched":
            return "the parameters " + ", ".join(ident.get(key) or ["none"])
        if key == "settings":
            shown = [f"{k}={(ident.get('settings') or {}).get(k, '(unset)')}" for k in changed[:4]]
            return " ".join(shown) + (f" (and {len(changed) - 4} more)" if len(changed) > 4 else "")
        return f"{key}={ident.get(key)}"

    keys = differ
    raise SweeperConfigError(
        f"hte_optuna: study {study.study_name!r} ({storage}) "
        f"{'searched' if keys == ['searched'] else 'holds trials on'} "
        f"{', '.join(said(recorded, k) for k in keys)}; this search "
        f"{'searches' if keys == ['searched'] else 'is on'} "
        f"{', '.join(said(identity, k) for k in keys)}: trials on other data, seeds or settings are not comparable. "
        f"Give this search its own hydra.sweeper.study_name (e.g. {study.study_name}_{_digest(identity)}), "
        f"or rerun with the study's settings")


def check_space(study: optuna.Study, trials: Sequence[FrozenTrial], space: SearchSpace) -> None:
    """Refuse a search whose parameters are incompatible with those the stored study used: Optuna cannot
    change a parameter's choices, kind or log scale within a study (it would fail at the first trial with a
    traceback); new bounds of an interval it takes."""
    from optuna.distributions import check_distribution_compatibility

    for trial in trials:
        for name, old in trial.distributions.items():
            new = space.distributions.get(name)
            if new is None:
                continue
            try:
                check_distribution_compatibility(old, new)
            except ValueError:
                raise SweeperConfigError(
                    f"hte_optuna: study {study.study_name!r} searched {name} over {describe(old)}; this search: "
                    f"{describe(new)}. Optuna cannot change a parameter's choices or kind within a study: give this search "
                    f"its own hydra.sweeper.study_name, or search {name} as before") from None


# --------------------------------------------------------------------------------------------------
# the sweeper


class OptunaSweeperImpl(Sweeper):
    def __init__(
        self,
        direction: Optional[str] = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        study_name: Optional[str] = None,
        storage: Optional[str] = None,
        seed: Optional[int] = None,
        sampler: Optional[Any] = None,
        params: Optional[Any] = None,
    ) -> None:
        super().__init__()
        direction = None if direction is None else str(direction).lower()
        if direction is not None and direction not in DIRECTIONS:
            raise SweeperConfigError(f"hydra.sweeper.direction={direction} is not allowed; use minimize or maximize")
        if int(n_trials) < 0:
            raise SweeperConfigError(f"hydra.sweeper.n_trials={n_trials} is not allowed; it must be ≥ 0")
        if int(n_jobs) < 1:
            raise SweeperConfigError(f"hydra.sweeper.n_jobs={n_jobs} is not allowed; it must be ≥ 1")
        self.direction = direction
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.study_name = study_name
        self.storage = storage
        self.seed = seed
        self.sampler_config = sampler
        self.params = params
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.job_idx = 0
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    # ---- sampler -----------------------------------------------------------------------------

    def make_sampler(self, seed: Optional[int]) -> Tuple[optuna.samplers.BaseSampler, str]:
        """The sampler, and how it was seeded (for the log)."""
        cfg = self.sampler_config
        if cfg is None:
            return optuna.samplers.TPESampler(seed=seed), f"seed={seed}"
        if isinstance(cfg, optuna.samplers.BaseSampler):
            return cfg, "as given"
        from hydra.utils import get_object, instantiate

        kwargs: Dict[str, Any] = {}
        if seed is not None and "seed" not in cfg:
            target = get_object(str(cfg["_target_"]))
            try:
                takes_seed = "seed" in inspect.signature(target).parameters
            except (TypeError, ValueError):
                takes_seed = False
            if takes_seed:
                kwargs["seed"] = seed
        sampler = instantiate(cfg, **kwargs)
        if not isinstance(sampler, optuna.samplers.BaseSampler):
            raise TypeError(f"hydra.sweeper.sampler must build an optuna sampler, got {type(sampler).__name__}")
        if "seed" in kwargs:
            return sampler, f"seed={seed}"
        return sampler, f"seed={cfg['seed']} from its config" if "seed" in cfg else "unseeded"

    # ---- sweep -------------------------------------------------------------------------------

    def check_search_space(self, space: SearchSpace) -> None:
        """Compose one config per choice of each categorical parameter and per bound of each numeric one
        (the other parameters at their first choice / lower bound); raise on the first that fails."""
        base = {name: _representatives(dist)[0] for name, dist in space.distributions.items()}
        candidates = [base]
        for name, dist in space.distributions.items():
            candidates += [{**base, name: value} for value in _representatives(dist)[1:]]
        for params in candidates:
            overrides = space.overrides(params)
            try:
                self.validate_batch_is_legal([overrides])
            except Exception as err:
                raise SweeperConfigError(
                    f"hte_optuna: the search space does not compose ({type(err).__name__}: {err}) with the "
                    f"overrides {' '.join(overrides)}. A key that is not in the config needs + or ++ "
                    "(e.g. ++estimator.model.max_samples: interval(0.2, 0.5)); a group choice must name "
                    "existing options"
                ) from err

    def sweep(self, arguments: List[str]) -> None:
        """Run the search: check the space and the study's identity, then ask, launch and tell trials in
        batches of ``n_jobs`` until ``n_trials`` are completed, and write the results file."""
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None

        space = parse_search_space(
            params_to_overrides(self.params) + list(arguments), config_loader=self.hydra_context.config_loader
        )
        if not space.distributions:
            log.warning("hte_optuna: the search space is empty (no choice/range/interval in hydra.sweeper.params "
                        "or on the command line); every trial runs the same configuration")
        refuse_condition_knobs(space)
        # A search space that cannot compose (a key missing its +/++, a group option that does not exist)
        # would fail trial after trial and leave FAIL trials in a stored study: stop before asking Optuna.
        self.check_search_space(space)
        self.direction = resolve_direction(self.direction, self.config)
        base = {name: _representatives(dist)[0] for name, dist in space.distributions.items()}
        identity = study_identity(self.config, self.hydra_context.config_loader.load_sweep_config(
            self.config, space.overrides(base)), list(space.distributions))

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        study_name = self.study_name or str(self.config.hydra.job.name)
        storage = _prepare_storage(self.storage)
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            direction=self.direction,
            load_if_exists=True,
            sampler=optuna.samplers.RandomSampler(),  # replaced below, once the history is known
        )
        if len(study.directions) != 1 or study.direction.name.lower() != self.direction:
            raise SweeperConfigError(
                f"study {study_name!r} in {storage} was created to "
                f"{', '.join(d.name.lower() for d in study.directions)}, not to {self.direction}; "
                "use another hydra.sweeper.study_name"
            )
        existing = study.get_trials(deepcopy=False)
        check_space(study, existing, space)  # first: other choices also move the first trial's settings
        check_identity(study, identity, storage)
        n_done = sum(t.state in COUNTED for t in existing)
        n_failed = sum(t.state == TrialState.FAIL for t in existing)
        n_running = sum(t.state == TrialState.RUNNING for t in existing)
        seed = self._seed_for(study)
        study.sampler, seeded = self.make_sampler(seed)
        # The default sampler (TPE, whose draws need no sequence) is made again for each trial with a seed from
        # the trial count; a configured one keeps its one seeding (a QMC sequence would lose its spacing).
        reseed = seed is not None and self.sampler_config is None
        if reseed:
            seeded = f"seed={self.seed} with each trial's number"
        to_run = max(0, self.n_trials - n_done)

        on = (f" on condition '{identity['condition']}', {seeds_text(identity['seeds'])}, "
              f"{identity['optimized_metric']}" if identity else "")
        failed = f" ({n_failed} failed before: not counted, so fixed trials run again)" if n_failed else ""
        log.info(
            f"hte_optuna: study {study_name!r} ({storage or 'in memory'}){on}, {self.direction}, "
            f"sampler {type(study.sampler).__name__} ({seeded}); {n_done} trials already completed{failed}, "
            f"{to_run} to run (n_trials={self.n_trials}, {self.n_jobs} per batch)"
        )
        log.info(f"hte_optuna: search space {', '.join(f'{k}: {describe(d)}' for k, d in space.distributions.items())}")
        if n_running:
            log.warning(
                f"hte_optuna: {n_running} trials of study {study_name!r} are still RUNNING (an interrupted sweep, "
                "or another process); they are not counted"
            )

        n_run = 0
        while n_run < to_run:
            # Another process may be adding trials to the same stored study: count its completed ones too,
            # so that together they stop near n_trials rather than each running n_trials.
            left = self.n_trials - sum(t.state in COUNTED for t in study.get_trials(deepcopy=False))
            batch = min(self.n_jobs, to_run - n_run, left)
            if batch <= 0:
                log.info(f"hte_optuna: study {study_name!r} has n_trials={self.n_trials} completed trials "
                         "(another process added some): stopping")
                break
            trials: List[Trial] = []
            launch: List[Tuple[Trial, List[str]]] = []
            told: set = set()
            try:
                for _ in range(batch):
                    # Each trial count its own draw: a resumed study or a second process asking later does not
                    # repeat earlier draws (two asking at the same instant may; MLflow's claims then fit it once).
                    if reseed:
                        study.sampler, _ = self.make_sampler(self._seed_for(study))
                    trials.append(study.ask(fixed_distributions=space.distributions))
                for trial in trials:
                    overrides = space.overrides(trial.params)
                    trial.set_user_attr("overrides", overrides)
                    try:
                        self.validate_batch_is_legal([overrides])
                    except Exception as err:  # noqa: BLE001 — e.g. a choice naming a missing group option
                        self._finish(study, trial, None, f"config does not compose: {type(err).__name__}: {err}")
                        told.add(trial.number)
                        continue
                    trial.set_user_attr("hydra_job_num", self.job_idx + len(launch))
                    launch.append((trial, overrides))
            except KeyboardInterrupt:  # Ctrl-C while asking or composing
                self._interrupted(study, [t for t in trials if t.number not in told])
                raise
            if launch:
                try:
                    returns = self.launcher.launch([ov for _, ov in launch], initial_job_idx=self.job_idx)
                except KeyboardInterrupt:
                    self._interrupted(study, [trial for trial, _ in launch])
                    raise
                except Exception as err:
                    # The launcher itself broke (not a job): close the batch's trials, then stop.
                    for trial, _ in launch:
                        self._finish(study, trial, None, f"launcher failed: {type(err).__name__}: {err}")
                    raise
                self.job_idx += len(returns)
                for (trial, _), ret in zip(launch, returns):
                    value, why = objective_value(ret)
                    self._finish(study, trial, value, why)
            n_run += batch

        self._write_results(study, study_name, storage, n_run, sweep_dir, identity)

    @staticmethod
    def _interrupted(study: optuna.Study, trials: List[Trial]) -> None:
        """Ctrl-C: these trials end FAIL (not counted: the same command again runs trials in their place),
        quietly — the interrupt's own line is the last thing said. Left RUNNING they stayed so for good and the
        study's counts did not add up."""
        for trial in trials:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            study.tell(trial, state=TrialState.FAIL)

    def _rerun(self, best: FrozenTrial) -> Optional[str]:
        """The best trial as one configuration run (an hte-bench command line): its overrides without the search
        file, which needs -m, and with the estimator that file chose (else the default estimator would be fitted
        with the trial's settings)."""
        choices = OmegaConf.select(self.config, "hydra.runtime.choices", default=None) or {}
        search = choices.get("hparams_search")
        if not search:
            return None
        overrides = [o for o in best.user_attrs.get("overrides", []) if o.lstrip("+").split("=")[0] != "hparams_search"]
        estimator = [] if any(o.lstrip("+").startswith("estimator=") for o in overrides) else \
            [f"estimator={choices.get('estimator')}"]
        return "hte-bench " + " ".join([*estimator, *overrides])

    def _seed_for(self, study: optuna.Study) -> Optional[int]:
        """The sampler's seed for the study's next trial, from ``seed`` and the number of trials it holds: a
        resumed study, or a second process on the same study, does not replay the draws already made, and
        seeds 0 and 1 do not give the same draws shifted by one (numpy's SeedSequence mixes the two)."""
        if self.seed is None:
            return None
        import numpy as np

        return int(np.random.SeedSequence([int(self.seed), len(study.get_trials(deepcopy=False))]).generate_state(1)[0])

    def _finish(self, study: optuna.Study, trial: Trial, value: Optional[float], why: Optional[str]) -> None:
        """Tell Optuna, and print one line."""
        if value is None:
            trial.set_user_attr("fail_reason", why)
            study.tell(trial, state=TrialState.FAIL)
            head = f"trial {trial.number}: FAILED ({why})"
        else:
            study.tell(trial, value)
            head = f"trial {trial.number}: value={value:.6g}"
        best = _best(study)
        best_text = f"trial {best.number}, value={best.value:.6g}" if best is not None else "none yet"
        (log.warning if value is None else log.info)(f"{head}, params={_short(trial.params)}; best so far {best_text}")

    def _write_results(
        self, study: optuna.Study, study_name: str, storage: Optional[str], n_run: int, sweep_dir: Path,
        identity: Optional[Dict[str, Any]] = None,
    ) -> None:
        """``optimization_results.yaml`` in the sweep folder: the best trial with its condition, seeds and the
        command that refits it, and the trial counts."""
        trials = study.get_trials(deepcopy=False)
        counts = {
            "total": len(trials),
            "complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),  # another process's, or a killed one's
            "this_run": n_run,
        }
        best = _best(study)
        results: Dict[str, Any] = {
            "name": "hte_optuna",
            "study_name": study_name,
            "storage": storage,
            "direction": self.direction,
            "best_trial": best.number if best else None,
            "best_value": best.value if best else None,
            "best_params": dict(best.params) if best else None,
            "best_overrides": list(best.user_attrs.get("overrides", [])) if best else None,
            "best_rerun": self._rerun(best) if best else None,
            "n_trials": counts,
        }
        objective = objective_direction(self.config) if identity is not None else None
        why = objective[2] if objective else ""  # e.g. "cate_coverage_test_mean: distance to its target 0.95"
        if identity is not None:  # what the values are: the objective across these seeds, on this data
            results["value_is"] = (f"{why}; each trial's configuration across {seeds_text(identity['seeds'])}, "
                                   f"condition '{identity['condition']}'")
            results.update(condition=identity["condition"], condition_hash=identity["condition_hash"],
                           seeds=list(identity["seeds"]))
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        if best is None:
            log.warning(f"hte_optuna: no trial of study {study_name!r} completed ({counts['failed']} failed)")
        else:
            on = (f" ({why}; on {seeds_text(identity['seeds'])}, condition "
                  f"'{identity['condition']}'; intervals: its configuration run, hte-bench-leaderboard)"
                  if identity else "")
            log.info(
                f"hte_optuna: best trial {best.number} of the study: value={best.value:.6g}{on}, "
                f"params={_short(best.params)} ({counts['complete']} complete, {counts['failed']} failed, "
                f"{n_run} run by this command, whose own best the sweep line below names); "
                f"results in {sweep_dir / 'optimization_results.yaml'}"
                + (f"; to refit it alone: {results['best_rerun']}" if results.get("best_rerun") else "")
            )


def _best(study: optuna.Study) -> Optional[FrozenTrial]:
    try:
        return study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None
