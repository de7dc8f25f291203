"""The one exception type that means "the user's input is wrong", and the one-line messages a seed's input
errors become (stage, cause, the closest parameter names, the generator's knobs)."""
from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration or input data; the message names the field and the allowed values."""


def interrupted(err: BaseException) -> bool:
    """Whether Ctrl-C is behind ``err``: a library's clean-up after a KeyboardInterrupt can raise an error of
    its own in its place (SQLAlchemy's PendingRollbackError when alembic's migrations are stopped)."""
    seen, todo = set(), [err]
    while todo:  # both links: ``raise X from Y`` inside an except block keeps the interrupt in __context__
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        todo += [err.__cause__, err.__context__]
    return False


def is_input_error(stage: str, err: BaseException) -> bool:
    """Whether a first-seed error is the user's input: data and estimator errors, and parameter errors at fit
    (sklearn's InvalidParameterError and econml's argument checks are ValueError/TypeError)."""
    from hte_bench.data.base import DataError

    return stage in ("data", "estimator") or isinstance(err, (DataError, ValueError, TypeError))


def one_line(stage: str, err: BaseException) -> str:
    """'stage: ErrorType: message', with the closest parameter names for a mistyped keyword."""
    cause = err.__cause__ or err
    if isinstance(cause, ConfigError):  # hte-bench's own message names the field already
        return " ".join(str(cause).split())[:500]
    text = " ".join(str(cause).split()) or type(cause).__name__
    hint = _did_you_mean(text)
    return f"{stage}: {type(cause).__name__}: {text}{hint}"[:500]


def knobs(cfg, stage: str, err: BaseException) -> str:
    """For a generator's own error (e.g. numpy's "scale < 0") or a fit's TypeError (``estimator.shrink=abc``
    multiplied): the values it was given, so the bad one shows."""
    from omegaconf import OmegaConf

    from hte_bench.data.base import DataError

    if stage == "fit" and isinstance(err.__cause__ or err, TypeError) and cfg.get("estimator") is not None:
        from hte_bench.config import flatten_dict

        # Scalar values only, text first: a string where a number belongs is the usual cause, and the line stays
        # short enough to show it (a forest's config has dozens of values).
        given = [(k, v) for k, v in flatten_dict(OmegaConf.to_container(cfg.estimator, resolve=True)).items()
                 if not k.endswith("_target_") and "_args_" not in k and isinstance(v, (str, int, float, bool))]
        given.sort(key=lambda kv: not isinstance(kv[1], str))
        shown = ", ".join(f"estimator.{k}={v!r}" for k, v in given)
        if len(shown) > 240:
            shown = shown[:240].rsplit(", ", 1)[0] + ", …"
        return f" (estimator {cfg.estimator.get('_target_')} given {shown})" if given else ""
    if stage != "data" or isinstance(err.__cause__ or err, DataError):  # Hydra's instantiate wraps errors
        return ""
    given = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k != "_target_"}
    called = f" with {', '.join(f'data.{k}={v}' for k, v in given.items())}" if given else " with its defaults"
    return f" (from {cfg.data._target_}{called})"[:300]


def check_target(field: str, target: str) -> None:
    """ConfigError unless ``target`` resolves as Hydra's instantiate would (the longest importable module
    prefix, then attributes: ``pkg.sub.generate``, ``my_module.Sim.generate``) to something callable; a
    mistyped module or attribute gets the closest name (Hydra only asks whether it is importable)."""
    import difflib
    import importlib
    import pkgutil
    from pathlib import Path

    parts = target.split(".")
    obj, used = None, 0
    for used in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:used])
        try:
            obj = importlib.import_module(module)
            break
        except ModuleNotFoundError as err:
            if err.name is None or not module.startswith(err.name):  # the module imports something missing
                raise ConfigError(f"{field}={target}: {module} could not import {err.name!r}: install it, or fix "
                                  f"the import in {module}") from None
        except Exception as err:  # a mistake inside the user's module: say where, in one line
            raise ConfigError(f"{field}={target}: importing {module} failed: {type(err).__name__}: {err}") from None
    if obj is None:
        here = sorted(p.stem for p in Path.cwd().glob("*.py"))
        close = difflib.get_close_matches(parts[0], here, n=1)
        hint = f" (did you mean {field}={'.'.join([close[0], *parts[1:]])}?)" if close else ""
        raise ConfigError(f"{field}={target}: no module {parts[0]!r}{hint}; put {parts[0]}.py in the folder you "
                          "run from, or install its package")
    for depth in range(used, len(parts)):
        if not hasattr(obj, parts[depth]):
            where = ".".join(parts[:depth])
            # A package's submodules are attributes only once imported: list them too.
            names = [n for n in dir(obj) if not n.startswith("_")] + \
                [m.name for m in pkgutil.iter_modules(getattr(obj, "__path__", []))]
            close = difflib.get_close_matches(parts[depth], names, n=1)
            hint = f" (did you mean {field}={'.'.join([*parts[:depth], close[0], *parts[depth + 1:]])}?)" if close else ""
            raise ConfigError(f"{field}={target}: {where} has no {parts[depth]!r}{hint}")
        obj = getattr(obj, parts[depth])
    if not callable(obj):
        raise ConfigError(f"{field}={target}: {target} is not a function or class")


def _did_you_mean(text: str) -> str:
    """For "X.__init__() got an unexpected keyword argument 'k'": the closest parameter names of X."""
    import difflib
    import re

    m = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", text)
    if not m:
        return ""
    cls = _find_class(m.group(1))
    if cls is None:
        return ""
    import inspect

    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    close = difflib.get_close_matches(m.group(2), params, n=3)
    return f"; did you mean {' or '.join(close)}?" if close else f"; its parameters: {', '.join(params)}"


def _find_class(name: str):
    """A class of that name among the estimator libraries already imported (econml, sklearn, hte_bench)."""
    import sys

    for mod_name, mod in list(sys.modules.items()):
        if mod_name.split(".")[0] in ("econml", "sklearn", "hte_bench") and isinstance(getattr(mod, name, None), type):
            return getattr(mod, name)
    return None
