"""Data conditions: the generator plus every resolved data knob, as a hash and a readable label.

Runs are tagged with their condition, and boards compare configurations only within one.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any


def _signature_defaults(target: str) -> dict[str, Any]:
    """The generator function's own keyword defaults (its knobs as nobody changed them); {} if unreadable."""
    import importlib

    module, _, name = target.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), name)
        params = inspect.signature(fn).parameters.values()
    except Exception:  # a generator we cannot import here still gets a condition: every knob in the label
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty and p.name != "seed"}


def typed_knobs(data: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Data knobs with numbers typed like the generator's defaults (``noise=3`` is ``noise=3.0``), as conditions
    are; ``defaults`` read from ``data["_target_"]`` when not given."""
    if defaults is None:
        target = str(data.get("_target_", "") or "")
        defaults = _signature_defaults(target) if target else {}
    out = dict(data)
    for key, value in out.items():
        if isinstance(defaults.get(key), float) and isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def reads_file_rows(data: Any) -> bool:
    """Whether a data config's generator splits the rows of a file (data=csv) rather than drawing new samples:
    its seeds are re-splits of the same rows, and its file is part of the condition."""
    return str((data or {}).get("_target_", "")).startswith("hte_bench.data.csv.")


def source_hash(data: dict[str, Any]) -> str:
    """Short hash of what a condition's draws come from beyond its knobs: a CSV file's bytes, or the source file
    of a generator outside hte_bench (a user's module); '' for hte-bench's own generators, whose code the
    runs' ``code_hash`` covers. An edited file is then another condition and configuration, never a resume."""
    target = str(data.get("_target_", ""))
    path = None
    if reads_file_rows(data):
        path = Path(str(data.get("path", ""))).expanduser()  # as the CSV generator reads it
    elif target and not target.startswith("hte_bench."):
        from hte_bench.config import module_file

        path = module_file(target)  # module.generate, or module.Class.method
    if path is None or not path.is_file():
        return ""
    stat = path.stat()
    return _file_digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """A file's short content hash, read once per version of the file (its path, time and size): a job asks
    for its condition several times, and a CSV may be large."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]


def condition_of(data: dict[str, Any], data_name: str) -> tuple[str, str]:
    """(hash, label) of a data condition from the resolved ``data`` config (knobs and ``_target_``).

    The hash covers every knob, the generator's own defaults filled in (``noise=1.0`` given or implied is
    one condition); numbers follow the type of the default (``noise=3`` is ``noise=3.0``). The label is the
    generator's name plus the knobs that differ from the generator's defaults, so it is the same wherever
    the condition appears (runs, boards, experiments), e.g. ``engagement noise=3.0``. A CSV's or a user
    generator's file is part of it (``source=<hash>``, ``source_hash``).
    """
    target = str(data.get("_target_", ""))
    defaults = _signature_defaults(target) if target else {}
    knobs = typed_knobs({**defaults, **data}, defaults)
    knobs.pop("_target_", None)
    source = source_hash(data)
    key = {"_target_": target or data_name, **knobs, **({"_source": source} if source else {})}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
    changed = [f"{k}={v}" for k, v in knobs.items() if k not in defaults or defaults[k] != v]
    return digest.hexdigest()[:12], " ".join([data_name, *changed, *([f"source={source}"] if source else [])])


def condition_tags(cfg, data_name: str) -> dict[str, str]:
    """Tags ``condition_hash`` and ``condition`` of a configuration's data, for its configuration and seed runs."""
    from omegaconf import OmegaConf

    chash, label = condition_of(OmegaConf.to_container(cfg.data, resolve=True), data_name)
    return {"condition_hash": chash, "condition": label}
