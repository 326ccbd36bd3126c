"""The flax forms a model's weights come in, read as one nested dict of arrays and written back
in the caller's form: a linen variables dict (collections first: ``params``, ``batch_stats``),
a bare parameter dict, an nnx ``State`` or an nnx ``Module`` (updated in place)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _layouts
from ._layouts import Layout

Path = tuple[Any, ...]


@dataclass
class FlaxTree:
    pure: dict  # nested dicts of arrays
    collection: bool  # the first key of every path is a linen collection
    rebuild: Callable[[dict], Any]  # a new pure dict -> the caller's form
    known_layouts: dict[str, Layout] = field(default_factory=dict)  # flax name -> layout


def _plain(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def _is_nnx(value: Any, kind: str) -> bool:
    nnx = sys.modules.get("flax.nnx")  # not imported: value cannot be one of its objects
    return nnx is not None and isinstance(value, getattr(nnx, kind))


def _weights_filter() -> Any:
    """nnx's variables torch has counterparts for: parameters and batch statistics (not, e.g.,
    a Dropout's RNG key and count, which stay as they are)."""
    from flax import nnx

    return nnx.Any(nnx.Param, nnx.BatchStat)


def read(target: Any) -> FlaxTree:
    """``target`` as a :class:`FlaxTree`."""
    if _is_nnx(target, "Module"):
        from flax import nnx

        known: dict[str, Layout] = {}
        for path, module in nnx.iter_modules(target):
            if isinstance(module, nnx.ConvTranspose):
                name = ".".join([*(str(p) for p in path), "kernel"])
                known[name] = _layouts.CONV if module.transpose_kernel else _layouts.CONV_TRANSPOSE

        def update(pure: dict) -> Any:
            nnx.update(target, pure)
            return target

        return FlaxTree(
            nnx.to_pure_dict(nnx.state(target, _weights_filter())), False, update, known
        )
    if _is_nnx(target, "State"):
        from flax import nnx

        def replaced(pure: dict) -> Any:
            state = jax.tree.map(lambda x: x, target)  # new Variables: the caller's untouched
            nnx.replace_by_pure_dict(state, pure)
            return state

        return FlaxTree(
            nnx.to_pure_dict(nnx.filter_state(target, _weights_filter())), False, replaced
        )
    if not isinstance(target, Mapping):
        raise TypeError(
            f"target must be flax weights (a linen variables or params dict, an nnx State or "
            f"Module), got {type(target).__name__}"
        )
    pure = _plain(target)
    collection = "params" in pure and all(isinstance(v, dict) for v in pure.values())
    return FlaxTree(pure, collection, lambda new: new)


def leaves(pure: dict, prefix: Path = ()) -> dict[Path, Any]:
    """Every leaf of a nested dict by its path (keys as they are), in insertion order."""
    out: dict[Path, Any] = {}
    for key, value in pure.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            out.update(leaves(value, path))
        else:
            out[path] = value
    return out


def with_leaves(pure: dict, new: Mapping[Path, Any]) -> dict:
    """A copy of ``pure`` with the leaves at ``new``'s paths replaced."""
    out = dict(pure)
    for path, value in new.items():
        node = out
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node[path[-1]] = value
    return out


def shape_of(leaf: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in np.shape(leaf))


def placed(value: np.ndarray, like: Any) -> jax.Array:
    """``value`` in ``like``'s dtype, on ``like``'s devices and sharding when it has one (a
    committed array or an abstract ``jax.ShapeDtypeStruct`` with a sharding)."""
    dtype = getattr(like, "dtype", None) or value.dtype
    array = np.asarray(value, dtype=dtype)
    sharding = getattr(like, "sharding", None)
    committed = getattr(like, "committed", True)
    if sharding is not None and committed:
        return jax.device_put(array, sharding)
    return jnp.asarray(array)
