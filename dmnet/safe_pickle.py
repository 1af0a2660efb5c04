"""A pickle module for `torch.load(..., pickle_module=safe_pickle)` that never runs pickled code.

`torch.load(weights_only=True)` refuses any global outside PyTorch's allowlist, so it cannot read
mmseg 1.x *training* checkpoints: their `message_hub` pickles mmengine `HistoryBuffer`s holding
numpy arrays. This module reads such files without importing or calling anything unknown:

- `find_class` returns the real object only for `ALLOWED` (tensor rebuilding, OrderedDict, bytes
  decoding and four harmless builtins: a small part of PyTorch's weights-only allowlist). Every
  other global becomes a `StandIn` subclass that merely carries the global's name; no module is
  imported.
- Instances rebuilt from their state (NEWOBJ + BUILD, how plain classes like `HistoryBuffer` pickle)
  become inert `StandIn` objects holding that state.
- Calling a global (REDUCE, INST/OBJ: how `__reduce__` exploits run `os.system` and friends) raises
  `UnsafePickleError` naming it, except for numpy's array/scalar/dtype reconstructors
  (`INERT_CALLS`), whose "call" only records its arguments: the data stays bytes, nothing runs.
"""

from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import pickle
from typing import Any, BinaryIO

import torch

ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _codecs.encode,  # bytes under pickle protocol 2
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
}

# Data constructors whose REDUCE is recorded instead of performed (numpy 1.x and 2.x paths).
INERT_CALLS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
    ("numpy", "dtype"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle tried to call a global that is not known to be harmless."""


class StandIn:
    """An inert object in place of an instance of a class that was not imported.

    `args` holds what it was constructed with, `state` what BUILD gave it; nothing else runs.
    """

    global_name = "?"  # "module.qualname" of the global this class stands in for
    inert_call = False  # True only for INERT_CALLS

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:  # NEWOBJ: cls.__new__(cls, *args)
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # only reached by REDUCE / INST / OBJ
        if not self.inert_call:
            raise UnsafePickleError(
                f"the pickle tries to call {self.global_name}{_short(args)}; refusing to run "
                "code from a checkpoint (nothing was called)")

    def __setstate__(self, state: Any) -> None:  # BUILD
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.global_name}>"


def _short(args: tuple) -> str:
    text = repr(args)
    return text if len(text) <= 80 else text[:77] + "...)"


def stand_in(module: str, name: str) -> type[StandIn]:
    """A fresh `StandIn` subclass for the global `module.name` (never imported)."""
    return type(f"StandIn[{module}.{name}]", (StandIn,), {
        "global_name": f"{module}.{name}", "inert_call": (module, name) in INERT_CALLS,
        "__module__": __name__,
    })


class Unpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals are the allowlist or inert stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 (torch.save's) writes Python 2 names, e.g. __builtin__.set: map them back.
        module, name = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        return stand_in(module, name)


def load(file: BinaryIO, **kwargs: Any) -> Any:
    """`pickle.load` with this module's `Unpickler` (torch's legacy format calls it directly)."""
    return Unpickler(file, **kwargs).load()
