"""Safe loading of model weights, shared by every model in LaVR.

Nothing here ever executes code stored in a file:

* ``.safetensors`` files are read with ``safetensors`` (a plain header plus raw tensors).
* ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin`` files are pickles, and are only ever read with
  ``torch.load(weights_only=True)``: it rebuilds tensors and plain containers, plus a short
  allow-list of harmless classes (``argparse.Namespace``, which training scripts store beside the
  weights). When the file names another class (an OmegaConf training config, say), that name is
  allow-listed for this one load as an *inert stand-in* (:class:`InertObject`), never the real
  class: it only holds the data the file gave it. A file that asks to *call* a function, or
  anything from a module like ``os``, ``subprocess`` or ``builtins`` (``os.system``, ``eval``...),
  is refused with a :class:`~lavr_core.errors.CheckpointError`. No module named by the file is
  imported and nothing it names is ever called.

:func:`strict_load` then copies a state dict into a module key for key and refuses a partial load:
its error lists the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .errors import CheckpointError

#: File name endings read as pickled torch checkpoints.
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")

#: Classes ``torch.load(weights_only=True)`` may rebuild in addition to torch's own list.
SAFE_GLOBALS = (argparse.Namespace,)

#: Common wrappers around a state dict's keys, tried longest first by :func:`strip_prefix`.
COMMON_PREFIXES = ("model.diffusion_model.", "module.", "model.", "_orig_mod.")

_REDOWNLOAD_HINT = "The file is incomplete or damaged: download it again (and check its size) before retrying."


# ------------------------------------------------------------------------------------ inert data

class InertObject:
    """Stand-in for an object of a class the checkpoint names but we do not trust or import.

    ``qualname`` is the ``module.Class`` the file named; ``args`` what it passed to ``__new__``;
    ``state`` what it passed to ``__setstate__`` (usually a dict). Attribute access falls back to
    ``state`` so ``obj.model`` works for simple configs.
    """

    qualname = "?"

    def __new__(cls, *args, **kwargs):  # pickle NEWOBJ: record the arguments, run nothing
        obj = object.__new__(cls)
        object.__setattr__(obj, "args", args)
        object.__setattr__(obj, "state", None)
        return obj

    def __setstate__(self, state):
        object.__setattr__(self, "state", state)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        state = object.__getattribute__(self, "__dict__").get("state")
        if isinstance(state, dict) and name in state:
            return state[name]
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict) and name in state[1]:
            return state[1][name]  # (dict_state, slots_state) form
        raise AttributeError(f"{self.qualname} (inert) has no attribute {name!r}")

    def __repr__(self):
        return f"<inert {self.qualname}>"


#: Modules whose names in a pickle mean an attempt to run something; such a file is refused outright.
_DANGEROUS_MODULES = {"os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil", "socket",
                      "importlib", "runpy", "pty", "ctypes", "code", "codeop", "pickle", "_pickle", "marshal",
                      "types", "functools", "operator", "io", "_io", "pathlib", "tempfile", "multiprocessing",
                      "threading", "signal", "webbrowser", "urllib", "http", "ftplib", "smtplib", "asyncio",
                      "inspect", "torch", "numpy", "copyreg", "platform"}


class _InertMeta(type):
    """What a pickle REDUCE ("call this with these arguments") does with a name we did not import.

    Nothing is ever called. A class-like name from an ordinary module (an Enum member, a config
    node) becomes one more inert object holding the arguments. A function-like name, or any name
    from a module whose only use in a pickle is to run something (``os.system``, ``eval``,
    ``subprocess.Popen``), makes the whole file refused, so a planted payload is reported loudly.
    """

    def __call__(cls, *args, **kwargs):
        module, _, name = cls.qualname.rpartition(".")
        root = module.split(".")[0]
        if root in _DANGEROUS_MODULES or not name[:1].isupper():
            raise _RefusedCall(cls.qualname)
        return cls.__new__(cls, *args)


class _RefusedCall(Exception):
    # Not an UnpicklingError on purpose: torch.load rewraps those into its generic advice text.
    def __init__(self, qualname: str):
        super().__init__(qualname)
        self.qualname = qualname


_inert_classes: dict[str, type] = {}


def _inert_class(module: str, name: str) -> type:
    qual = f"{module}.{name}"
    cls = _inert_classes.get(qual)
    if cls is None:
        cls = _InertMeta(name, (InertObject,), {"qualname": qual, "__module__": "lavr_core.checkpoint_io.inert"})
        _inert_classes[qual] = cls
    return cls


def _safe_reconstructor(cls, base, state):
    """Protocol-0/1 object rebuild (``copyreg._reconstructor``) limited to inert and plain objects."""
    if base is object and isinstance(cls, type) and issubclass(cls, InertObject):
        return cls.__new__(cls)
    raise _RefusedCall(f"copyreg._reconstructor({getattr(cls, '__name__', cls)!r}, {getattr(base, '__name__', base)!r})")


#: Callables a checkpoint may use (GLOBAL + REDUCE/NEWOBJ) besides torch's own tensor rebuilders:
#: plain containers and value types, none of which can run code the file chose.
_HARMLESS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,  # the factory is only called on a missing key
    ("builtins", "dict"): dict, ("builtins", "list"): list, ("builtins", "tuple"): tuple,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "int"): int,
    ("builtins", "float"): float, ("builtins", "complex"): complex, ("builtins", "bool"): bool,
    ("builtins", "str"): str, ("builtins", "bytes"): bytes, ("builtins", "bytearray"): bytearray,
    ("builtins", "slice"): slice, ("builtins", "range"): range, ("builtins", "object"): object,
    ("argparse", "Namespace"): argparse.Namespace,
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset,
}


#: torch names a class it will not rebuild in this text; the name is what the pickle wrote.
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
#: ... and in this one a global of a module torch itself blocks (``os``, ``subprocess``, ...).
_BLOCKED_GLOBAL = re.compile(r"unsupported GLOBAL ([\w.]+) whose module [\w.]+ is blocked")
#: More distinct unknown classes than this in one file is not a checkpoint we should be reading.
_MAX_UNKNOWN_GLOBALS = 64


def _stand_in(qualname: str) -> Any:
    """What an unknown global of the pickle is allow-listed as: a harmless builtin, or an inert class."""
    module, _, name = qualname.rpartition(".")
    # Python-2 names (protocol <= 2 pickles write ``commands.Popen`` for ``subprocess.Popen``)
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return _HARMLESS.get((module, name)) or _inert_class(module, name)


# ----------------------------------------------------------------------------------- file loading

def _what(path: Path, what: str | None) -> str:
    return what or "checkpoint"


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise CheckpointError(f"The {what} file {path} does not exist.",
                              "Check the file name, or put the file in the model folder and refresh the node list.")
    if not path.is_file():
        raise CheckpointError(f"The {what} path {path} is not a file.", "Select a weights file, not a folder.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"The {what} file {path} is empty (0 bytes).", _REDOWNLOAD_HINT)


def is_safetensors(path: str | Path) -> bool:
    return str(path).lower().endswith(SAFETENSORS_SUFFIXES)


def load_safetensors(path: str | Path, *, device: str = "cpu", what: str | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file; a truncated or corrupt file gives a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    w = _what(p, what)
    _check_file(p, w)
    try:
        return load_file(str(p), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"Cannot read the {w} file {p} as safetensors ({e}).", _REDOWNLOAD_HINT) from e


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The free-form ``__metadata__`` of a safetensors header (empty when absent)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _torch_load(p: Path, *, mmap: bool):
    """``torch.load(weights_only=True)``, allow-listing each class the file names as an inert stand-in.

    torch stops at the first global outside its allow-list; that name gets a stand-in and the load
    starts again (unknown classes are few: a config object or two), so only data is ever rebuilt.
    """
    kw: dict[str, Any] = dict(map_location="cpu")
    if mmap:
        kw["mmap"] = True
    extra: list[tuple[Any, str]] = []
    for _ in range(_MAX_UNKNOWN_GLOBALS):
        try:
            with torch.serialization.safe_globals([*SAFE_GLOBALS, *extra]):
                return torch.load(str(p), weights_only=True, **kw)
        except pickle.UnpicklingError as e:
            blocked = _BLOCKED_GLOBAL.search(str(e))
            if blocked:
                raise _RefusedCall(blocked.group(1)) from None
            m = _UNSUPPORTED_GLOBAL.search(str(e))
            # torch prints builtins without their module but matches allow-list names with it
            qual = None if m is None else m.group(1) if "." in m.group(1) else f"builtins.{m.group(1)}"
            if qual is None or any(name == qual for _, name in extra):
                raise
            extra.append((_stand_in(qual), qual))
    raise pickle.UnpicklingError(f"more than {_MAX_UNKNOWN_GLOBALS} unknown classes in one file")


def _is_truncation(e: BaseException) -> bool:
    msg = str(e).lower()
    return any(s in msg for s in ("central directory", "failed reading zip", "unexpected eof", "ran out of input",
                                  "truncated", "pickle data was truncated", "invalid load key", "file read failed",
                                  "eof", "not a zip file", "bad zip"))


def load_pickle_checkpoint(path: str | Path, *, what: str | None = None, mmap: bool = True) -> Any:
    """The object stored in a torch pickle checkpoint, read without executing code.

    Returns whatever the file holds (usually a dict). Objects of classes outside the allow-list come
    back as :class:`InertObject` data. Raises :class:`CheckpointError` for a missing, empty,
    truncated or corrupt file, and for a file whose pickle tries to call code (e.g. ``os.system``).
    ``mmap`` maps zip-format files instead of reading them into memory (falls back when unsupported).
    """
    p = Path(path)
    w = _what(p, what)
    _check_file(p, w)
    if mmap and not zipfile.is_zipfile(p):
        mmap = False  # legacy (non-zip) torch files cannot be memory-mapped
    try:
        return _torch_load(p, mmap=mmap)
    except _RefusedCall as e:
        raise CheckpointError(
            f"The {w} file {p} asks to run code ({e.qualname}) while loading; LaVR refuses to load it.",
            "Only use weights from the official source; this file may be malicious or corrupted.") from e
    except pickle.UnpicklingError as e:
        msg = str(e)
        if _is_truncation(e):
            raise CheckpointError(f"The {w} file {p} is truncated or corrupt ({msg.splitlines()[0]}).",
                                  _REDOWNLOAD_HINT) from e
        raise CheckpointError(f"Cannot read the {w} file {p} ({msg.splitlines()[0] if msg else type(e).__name__}).",
                              _REDOWNLOAD_HINT) from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError,
            AttributeError, IndexError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if _is_truncation(e) or isinstance(e, (EOFError, zipfile.BadZipFile)):
            raise CheckpointError(f"The {w} file {p} is truncated or corrupt ({msg}).", _REDOWNLOAD_HINT) from e
        raise CheckpointError(f"Cannot read the {w} file {p} ({msg}).", _REDOWNLOAD_HINT) from e


def load_file_any(path: str | Path, *, what: str | None = None) -> Any:
    """A ``.safetensors`` file as a tensor dict, any other checkpoint as its (safely) unpickled object."""
    if is_safetensors(path):
        return load_safetensors(path, what=what)
    return load_pickle_checkpoint(path, what=what)


def find_state_dict(obj: Any, keys: Iterable[str] = ("model", "state_dict", "module", "model_state_dict", "ema"),
                    *, path: str | Path = "?", what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint: ``obj`` itself or ``obj[k]`` for the first ``k`` found."""
    def is_sd(d):
        return isinstance(d, Mapping) and len(d) > 0 and all(isinstance(k, str) for k in d) and \
            sum(isinstance(v, torch.Tensor) for v in d.values()) >= max(1, len(d) // 2)

    if isinstance(obj, Mapping):
        for k in keys:
            if k in obj and is_sd(obj[k]):
                return {kk: vv for kk, vv in obj[k].items() if isinstance(vv, torch.Tensor)}
        if is_sd(obj):
            return {kk: vv for kk, vv in obj.items() if isinstance(vv, torch.Tensor)}
    raise CheckpointError(f"The {what} file {path} holds no state dict (no tensors under {', '.join(keys)}).",
                          "Select a model weights file, not an optimizer state, config or other data.")


# ---------------------------------------------------------------------------------- state dicts

def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefixes: Iterable[str] = COMMON_PREFIXES
                 ) -> dict[str, torch.Tensor]:
    """Remove a wrapper prefix shared by **all** keys (``module.``, ``model.``, ...), repeatedly.

    Only a prefix every key has is stripped, so a model that really has a top-level ``model``
    submodule next to others is left alone.
    """
    sd = dict(state_dict)
    prefixes = sorted(prefixes, key=len, reverse=True)
    changed = True
    while changed and sd:
        changed = False
        for pre in prefixes:
            if all(k.startswith(pre) for k in sd):
                sd = {k[len(pre):]: v for k, v in sd.items()}
                changed = True
                break
    return sd


def cast_floating(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Floating-point tensors cast to ``dtype`` (others untouched); ``None`` leaves all as stored."""
    if dtype is None:
        return dict(state_dict)
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state_dict.items()}


def _fmt(names: list[str], n: int) -> str:
    head = ", ".join(names[:n])
    return head + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def compare_state_dict(expected: Mapping[str, Any], given: Mapping[str, torch.Tensor]):
    """``(missing, unexpected, mismatched)`` between expected ``{name: tensor or shape}`` and given."""
    def shape(v):
        return tuple(v.shape) if hasattr(v, "shape") else tuple(v)

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [(k, shape(given[k]), shape(expected[k])) for k in expected
                  if k in given and shape(given[k]) != shape(expected[k])]
    return missing, unexpected, mismatched


def strict_load(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "model", *,
                assign: bool = False, max_listed: int = 8, hint: str | None = None,
                check_finite: bool = True) -> None:
    """Copy ``state_dict`` into ``module`` key for key, or raise a CheckpointError saying what differs.

    Never loads partially: every parameter and buffer of ``module`` must be present with its shape,
    and the file may hold nothing else. Values are converted to each parameter's dtype
    (``assign=True`` instead adopts the file's tensors, e.g. into a model built on the meta device).
    """
    expected = module.state_dict(keep_vars=True)
    missing, unexpected, mismatched = compare_state_dict(expected, state_dict)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_fmt(missing, max_listed)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_fmt(unexpected, max_listed)}")
        if mismatched:
            shown = [f"{k} (file {list(a)} vs model {list(b)})" for k, a, b in mismatched]
            parts.append(f"{len(mismatched)} with the wrong shape: {_fmt(shown, max_listed)}")
        raise CheckpointError(
            f"The weights do not fit the {what} ({len(state_dict)} tensors in the file, {len(expected)} in the model); "
            + "; ".join(parts) + ".",
            hint or "The file is probably for a different model or a different size of this model: "
                    "select the matching file (or loader).")
    bad = [k for k, v in state_dict.items() if check_finite and v.is_floating_point() and v.device.type != "meta"
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"The {what} weights contain NaN or infinite values in {_fmt(bad, max_listed)}.",
                              _REDOWNLOAD_HINT)
    module.load_state_dict(dict(state_dict), strict=True, assign=assign)


__all__ = [
    "COMMON_PREFIXES", "InertObject", "PICKLE_SUFFIXES", "SAFETENSORS_SUFFIXES", "SAFE_GLOBALS",
    "cast_floating", "compare_state_dict", "find_state_dict", "is_safetensors", "load_file_any",
    "load_pickle_checkpoint", "load_safetensors", "safetensors_metadata", "strict_load", "strip_prefix",
]

