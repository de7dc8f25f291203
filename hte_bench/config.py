"""Config checks and helpers that need only OmegaConf: validation, flattening, hashing, per-seed views."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from hte_bench.errors import ConfigError

# Keys that do not change what is estimated, so they stay out of the config hash. optimized_metric only says
# what a sweeper is told: a rerun with another objective resumes the same configuration runs, never refits.
_NOT_HASHED = ("seed", "n_seeds", "n_jobs", "joblib_backend", "resume", "nuisance_cache", "tracking", "claims",
               "hydra", "min_units_per_arm", "optimized_metric")
JOBLIB_BACKENDS = ("loky", "ray")  # where n_jobs seeds run (hte_bench/backends.py)
SEED_PLACEHOLDER = "<per-seed>"


def _require(cfg: DictConfig, key: str, ok, allowed: str) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None or not ok(value):
        raise ConfigError(f"{key}={value!r} is not allowed; {key} must be {allowed}")


def is_int(v: Any) -> bool:
    """An int that is not a bool (YAML's true is an int to Python)."""
    return isinstance(v, int) and not isinstance(v, bool)


def flatten_dict(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{dotted.key: leaf}``; keys that already contain dots stay as written."""
    from collections.abc import Mapping

    out: dict[str, Any] = {}
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten_dict(v, key))
        else:
            out[key] = v
    return out


def _missing(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is the mandatory marker ``???``."""
    out = []
    for key in node.keys() if isinstance(node, DictConfig) else []:
        path = f"{prefix}{key}"
        if OmegaConf.is_missing(node, key):
            out.append(path)
        elif isinstance(node.get(key), DictConfig):
            out += _missing(node.get(key), f"{path}.")
    return out


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first impossible value, before anything is generated or logged."""
    if not isinstance(cfg.get("data"), DictConfig) or not cfg.data:
        raise ConfigError("no data generator (removed with ~data?): choose one, e.g. data=engagement, or your own "
                          "without ~data: data._target_=my_module.generate data.n=2000")
    _check_data_file(cfg)  # a wrong path is the first thing to fix, before the columns it should hold
    missing = [k for k in _missing(cfg) if not k.startswith("hydra.")]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required: give {' '.join(m + '=...' for m in missing)}")
    _require(cfg, "n_seeds", lambda v: is_int(v) and v > 0, "an integer ≥ 1")
    _require(cfg, "n_jobs", lambda v: is_int(v) and v != 0, "a non-zero integer (-1 = all cores)")
    _require(cfg, "joblib_backend", lambda v: v in JOBLIB_BACKENDS, " or ".join(JOBLIB_BACKENDS))
    _require(cfg, "alpha", lambda v: isinstance(v, float) and 0 < v < 1, "a number in (0, 1), e.g. 0.05")
    _require(cfg, "data._target_", lambda v: isinstance(v, str) and "." in v,
             "a dotted path to a generate(seed, n, n_test, ...) function")
    _require(cfg, "estimator._target_", lambda v: isinstance(v, str) and "." in v,
             "a dotted path to an estimator adapter class")
    if not str(cfg.data._target_).startswith("hte_bench."):  # a user's generator: a typo gets a did-you-mean
        from hte_bench.errors import check_target

        check_target("data._target_", str(cfg.data._target_))
    for key in ("data.n", "data.n_test"):
        if OmegaConf.select(cfg, key, default=None) is not None:
            _require(cfg, key, lambda v: is_int(v) and v > 0, "an integer ≥ 1")
    _require(cfg, "tracking.plots", lambda v: isinstance(v, bool) or (is_int(v) and v >= 0),
             "true (every seed), false, or k ≥ 0 (figures of the first k seeds, plus the configuration's)")
    for name in [k for k in (OmegaConf.select(cfg, "analyses", default=None) or {}) if k != "seeds"]:
        _require(cfg, f"analyses.{name}", lambda v: isinstance(v, bool), "true or false")
    if OmegaConf.select(cfg, "analyses.seeds", default=None) is not None:
        _require(cfg, "analyses.seeds", lambda v: isinstance(v, bool) or (is_int(v) and v >= 0),
                 "true (every seed), false, or k ≥ 0 (insights, truth-free scores, subgroup tables and trees on "
                 "the first k seeds)")
    resume = OmegaConf.select(cfg, "resume", default=True)
    if not (isinstance(resume, bool) or resume == "force"):
        raise ConfigError(f"resume={resume!r} is not allowed; resume must be true, false or force")
    seeds = OmegaConf.select(cfg, "seeds", default=None)
    if seeds is not None:
        shown = list(seeds) if isinstance(seeds, (list, ListConfig)) else seeds
        if not isinstance(seeds, (list, ListConfig)) or not seeds or not all(is_int(s) and s >= 0 for s in seeds):
            raise ConfigError(f"seeds={shown!r} is not allowed; seeds must be a non-empty list of integers ≥ 0, "
                              "e.g. seeds=[0,3,7] (or n_seeds=5 for seeds 0-4)")
        repeated = sorted({int(s) for s in seeds if list(seeds).count(s) > 1})
        if repeated:
            raise ConfigError(f"seeds={shown!r} repeats seed(s) {repeated}; each seed is one draw and one fit, "
                              "give it once")


# Top-level modules installed by an optional extra of hte-bench (pyproject.toml [project.optional-dependencies];
# tests/test_causalml.py keeps the two in step), so a missing one is answered with the extra to install.
EXTRAS = {"causalml": "causalml"}


def check_packages(cfg: DictConfig, choices: dict[str, str] | None = None) -> None:
    """Refuse an estimator whose ``_target_`` (its own, its model's, its nuisance models') lives in a package that is
    not installed, naming the package and the pip command, instead of Hydra's "Error locating target"."""
    import importlib.util

    for group, target in _estimator_targets(cfg):
        top = target.split(".")[0]
        if top and importlib.util.find_spec(top) is None:  # finds without importing: stays fast
            option = (choices or {}).get(group) or str(OmegaConf.select(cfg, f"{group}._target_"))
            raise ConfigError(f"{group}: {option} needs the package {top}, not installed: {install_hint(top)}")


def install_hint(package: str) -> str:
    """The pip command that installs a missing package: hte-bench's extra where it has one."""
    extra = EXTRAS.get(package)
    if extra is None:
        return f"pip install {package}"
    return f'pip install "hte-bench[{extra}]" (in a checkout of hte-bench: pip install -e ".[{extra}]")'


def _estimator_targets(cfg: DictConfig) -> list[tuple[str, str]]:
    """(group, _target_) of every object the estimator config builds; a ``${group}`` it uses (outcome_model,
    treatment_model) is attributed to that group."""
    out: list[tuple[str, str]] = []

    def walk(node: Any, group: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_target_" and isinstance(value, str):
                    out.append((group, value))
                else:
                    walk(value, group)
        elif isinstance(node, list):
            for value in node:
                walk(value, group)
        elif isinstance(node, str) and node.startswith("${") and node.endswith("}"):
            used = node[2:-1]
            if used != group and isinstance(cfg.get(used), DictConfig):
                walk(OmegaConf.to_container(cfg[used], resolve=False), used)

    walk(OmegaConf.to_container(cfg.estimator, resolve=False), "estimator")
    return out


def module_file(target: str) -> Optional[Path]:
    """The source file of the module that holds a dotted ``_target_`` (``module.function`` or
    ``module.Class.method``: the longest prefix that is a module); None when there is none."""
    import importlib.util

    parts = target.split(".")
    for end in range(len(parts) - 1, 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except (ImportError, ValueError, AttributeError):  # a class's name is not a module: try shorter
            continue
        if spec is not None and spec.has_location and spec.origin:
            return Path(spec.origin)
    return None


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    """The folders of Python's standard library and installed packages (this environment's and the user's)."""
    import site
    import sysconfig

    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    paths.add(site.getusersitepackages())
    return tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)


def user_file(target: str) -> Optional[Path]:
    """The file of a ``_target_``'s module when it is the user's own code (not hte_bench, whose sources the
    ``code_hash`` covers, nor the standard library or an installed package: the versions of the main fitting
    libraries are resume keys, store.RESUME_PACKAGES); None otherwise. A library is recognised from its
    top-level package, found without importing it."""
    import importlib.util

    top = target.split(".")[0]
    if not top or top == "hte_bench":
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    where = spec.origin if spec is not None and spec.has_location else None
    if where is None and spec is not None and spec.submodule_search_locations:
        where = next(iter(spec.submodule_search_locations), None)  # a namespace package: its folder
    if where is None or os.path.realpath(where).startswith(_library_roots()):
        return None
    found = module_file(target)
    return found if found is not None and found.is_file() else None


def _estimator_sources(cfg: DictConfig) -> tuple[set[str], set[str]]:
    """What the estimator config is built from: (import names of the libraries — an adapter of ours names those
    it imports inside, REQUIRES — and the top-level names of the user's own modules)."""
    import importlib

    libraries, own = set(), set()
    for _, target in _estimator_targets(cfg):
        top = target.split(".")[0]
        if not top:
            continue
        if top == "hte_bench":
            libraries.update(getattr(importlib.import_module(target.rsplit(".", 1)[0]), "REQUIRES", ()))
        elif user_file(target) is not None:
            own.add(top)
        else:
            libraries.add(top)
    return libraries, own


def model_dependencies(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """What a registered model of this configuration needs to load elsewhere: the installed distributions its
    estimator's ``_target_``s come from (DoubleML, CausalML, LightGBM, …), and the user's own modules (their
    file, or their top-level package's folder) to ship beside it. hte_bench itself is shipped by the registry."""
    import importlib.metadata
    import importlib.util

    libraries, own = _estimator_sources(cfg)
    distributions = importlib.metadata.packages_distributions()
    packages = {d for name in libraries for d in distributions.get(name, [])}
    paths = set()
    for top in own:
        spec = importlib.util.find_spec(top)
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        paths.add(folders[0] if folders else str(spec.origin))
    return sorted(packages), sorted(paths)


def library_versions(cfg: DictConfig) -> str:
    """Versions of the libraries the estimator is built from beyond the resume keys every run has (econml,
    scikit-learn, statsmodels, numpy: store.RESUME_PACKAGES), e.g. ``doubleml=0.10.1,lightgbm=4.6.0``; "" when
    none. A resume key too: seeds fitted under another DoubleML must not join these.

    Import names found as distributions (doubleml, causalml, lightgbm, xgboost, …); cheap: nothing is imported
    but hte-bench's own adapter modules, for their REQUIRES.
    """
    import importlib.metadata

    from hte_bench.tracking.store import RESUME_PACKAGES

    versions = {}
    for name in sorted(_estimator_sources(cfg)[0] - {"sklearn", "numpy", "econml", "statsmodels", *RESUME_PACKAGES}):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # an import name unlike its distribution's: not a key
            pass
    return ",".join(f"{k}={v}" for k, v in versions.items())


def user_code_hash(cfg: DictConfig) -> str:
    """Short hash of the user's own modules the estimator is built from (an adapter subclass, a nuisance model
    of theirs), '' for none. A resume key, like hte-bench's own sources: an edited adapter refits its seeds
    instead of keeping those of the old code."""
    files = {}
    for _, target in _estimator_targets(cfg):
        path = user_file(target)
        if path is not None:
            files[target.rsplit(".", 1)[0]] = path
    if not files:
        return ""
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def _check_data_file(cfg: DictConfig) -> None:
    """A generator reading a file (``data.path``): the file must exist; with its columns still to be chosen,
    name them."""
    if OmegaConf.is_missing(cfg.data, "path") or not isinstance(cfg.data.get("path"), str):
        return
    from hte_bench.data.csv import columns_hint, missing_file

    problem = missing_file(cfg.data.path)
    if problem:
        raise ConfigError(f"data.path={cfg.data.path!r}: {problem}")
    todo = [f"data.{k}" for k in ("outcome", "treatment") if OmegaConf.is_missing(cfg.data, k)]
    from hte_bench.data.conditions import reads_file_rows

    if todo and reads_file_rows(cfg.data):
        raise ConfigError(f"{', '.join(todo)} required: give {' '.join(k + '=<column>' for k in todo)}; "
                          f"{columns_hint(cfg.data.path)}")


def seeds_of(cfg: DictConfig) -> list[int]:
    """Seeds 0..n_seeds-1, unless an explicit ``seeds`` list is given."""
    explicit = OmegaConf.select(cfg, "seeds", default=None)
    return [int(s) for s in explicit] if explicit is not None else list(range(int(cfg.n_seeds)))


def on_first_seeds(cfg: DictConfig, key: str, seed: int) -> bool:
    """For a knob that is true (every seed), false or 0 (none) or k (the first k seeds of the configuration's
    seed list): whether it holds for this seed; never depends on the order or the process of the work."""
    value = OmegaConf.select(cfg, key, default=True)
    if isinstance(value, bool) or not isinstance(value, int):
        return bool(value)
    return value > 0 and int(seed) in seeds_of(cfg)[:value]


def seed_list(seeds) -> str:
    """Seeds as people read them: ``0-7`` for a run of consecutive seeds, else ``0,3,9``."""
    s = sorted({int(x) for x in seeds})
    if not s:
        return ""
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ",".join(map(str, s))


def for_seed(cfg: DictConfig, seed: Any) -> DictConfig:
    """A copy of cfg whose ``${seed}`` interpolations (random_state of models) resolve to this seed."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    out.seed = seed
    return out


_SEEDED: "OrderedDict[int, tuple]" = OrderedDict()
_SEEDED_LOCK = threading.Lock()


def seeded(cfg: DictConfig, key: str, seed: Any) -> Any:
    """``cfg.<key>`` as plain containers, resolved with ``${seed}`` = seed (what ``for_seed`` gives, ~5x cheaper).

    A copy of cfg is made once per configuration in a process and its seed set per call: copying the whole
    config for every seed cost more than fitting an OLS. The copy is made again if cfg has changed since. The
    result is fully resolved, so nothing returned earlier changes when the copy's seed does."""
    now = OmegaConf.to_container(cfg, resolve=False)
    with _SEEDED_LOCK:  # one shared copy: threads (a threaded launcher) take turns setting its seed
        entry = _SEEDED.get(id(cfg))
        if entry is None or entry[1] != now:
            # The entry holds cfg, so no other object can take its id while the entry exists.
            entry = _SEEDED[id(cfg)] = (cfg, now, for_seed(cfg, seed))
            while len(_SEEDED) > 8:
                _SEEDED.popitem(last=False)
        copy = entry[2]
        copy.seed = seed
        return OmegaConf.to_container(OmegaConf.select(copy, key), resolve=True)


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as dotted keys (hydra section dropped), seed-dependent values shown as placeholders."""
    container = OmegaConf.to_container(for_seed(cfg, SEED_PLACEHOLDER), resolve=True)
    container.pop("hydra", None)
    return flatten_dict(container)


def is_hashed(key: str) -> bool:
    """Whether a flattened config key (``estimator.model.cv``) is part of what is estimated, so of the
    configuration's hash; seeds, parallelism, tracking and the like are not."""
    return key.split(".")[0] not in _NOT_HASHED and key != "seeds"


def config_hash(cfg: DictConfig) -> str:
    """Stable short hash of what is estimated: the resolved config without seeds and tracking settings."""
    flat = {k: v for k, v in flatten(cfg).items() if is_hashed(k)}
    from hte_bench.evaluation.registry import module_names

    modules = module_names(flat.pop("metric_modules", None))  # [a] and a, any order: one configuration
    if modules:  # none hashes as before the key existed
        flat["metric_modules"] = modules
    from hte_bench.data.conditions import source_hash

    source = source_hash(OmegaConf.to_container(cfg.data, resolve=True)) if cfg.get("data") is not None else ""
    if source:  # a CSV's or a user generator's file: edited, it is another configuration (no stale resume)
        flat["data_source"] = source
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:12]
