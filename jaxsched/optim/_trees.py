"""Parameter trees for the stateful optimizers: torch-style groups -> one tree + labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

KeyPath = tuple[Any, ...]


def path_str(path: KeyPath) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def is_group_list(params: Any) -> bool:
    """torch's convention: a list of dicts that all carry a ``"params"`` entry."""
    return (
        isinstance(params, (list, tuple))
        and len(params) > 0
        and all(isinstance(g, Mapping) and "params" in g for g in params)
    )


def plain(tree: Any) -> Any:
    """``tree`` with every flax ``nnx.State`` in it (the tree itself, or values of plain dicts)
    as its pure nested dict of arrays: the paths are the same (without nnx's ``.value``), so
    that groups cut from one model's state merge, and a gradient ``State`` (``nnx.grad``)
    matches parameters given as state or as dicts."""
    if isinstance(tree, Mapping) and type(tree).__module__.startswith("flax.nnx"):
        from flax import nnx  # installed: the tree holds one of its states

        return nnx.to_pure_dict(tree)  # type: ignore[arg-type]
    if type(tree) is dict:
        return {key: plain(value) for key, value in tree.items()}
    return tree


def leaves_with_paths(tree: Any) -> list[tuple[KeyPath, Any]]:
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def check_float_leaves(tree: Any) -> None:
    for path, leaf in leaves_with_paths(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(
                f"optimizer can only optimize floating-point arrays, but the leaf at "
                f"{path_str(path)} is {type(leaf).__name__} with dtype {dtype}"
            )


def merge(trees: list[Any]) -> Any:
    """Deep union of parameter trees that are (nested) mappings; a leaf present in two trees
    raises torch's ``ValueError``."""
    if len(trees) == 1:
        return trees[0]
    if not all(isinstance(t, Mapping) for t in trees):
        raise ValueError(
            "with several parameter groups, each group's 'params' must be a (nested) dict "
            "holding its part of one parameter tree"
        )
    out: dict[Any, Any] = {}
    for tree in trees:
        for key, value in tree.items():
            if key not in out:
                out[key] = value
            elif isinstance(out[key], Mapping) and isinstance(value, Mapping):
                out[key] = merge([out[key], value])
            else:
                raise ValueError("some parameters appear in more than one parameter group")
    return out


def group_leaf_indices(union: Any, groups: list[Any]) -> list[list[int]]:
    """For each group, the flat indices (in the union's flatten order) of its leaves."""
    position = {path: i for i, (path, _) in enumerate(leaves_with_paths(union))}
    return [[position[path] for path, _ in leaves_with_paths(tree)] for tree in groups]


def skeleton(tree: Any) -> Any:
    """``tree``'s structure with 0 for every leaf (the paths, without holding the arrays)."""
    return jax.tree.map(lambda _: 0, tree)


def subtree(union: Any, skeleton: Any) -> Any:
    """The leaves of ``union`` at the paths of ``skeleton``, in ``skeleton``'s structure."""
    by_path = dict(leaves_with_paths(union))
    paths = [path for path, _ in leaves_with_paths(skeleton)]
    return jax.tree.structure(skeleton).unflatten([by_path[path] for path in paths])


def labels_for(union: Any, indices: list[list[int]]) -> Any:
    treedef = jax.tree.structure(union)
    labels: list[int | None] = [None] * treedef.num_leaves
    for g, idx in enumerate(indices):
        for i in idx:
            labels[i] = g
    return treedef.unflatten(labels)


def first_mismatch(expected: Any, got: Any) -> str | None:
    """A message naming the first path where ``got`` differs from ``expected`` in structure,
    shape or dtype; ``None`` when they match."""
    want = dict(leaves_with_paths(expected))
    have = dict(leaves_with_paths(got))
    for path in want:
        if path not in have:
            return f"gradient missing at {path_str(path)}"
    for path in have:
        if path not in want:
            return f"unexpected gradient at {path_str(path)} (no such parameter)"
    if jax.tree.structure(expected) != jax.tree.structure(got):
        return "gradients have a different container structure than the parameters"
    for path, p in want.items():
        g = have[path]
        shape, dtype = getattr(g, "shape", None), getattr(g, "dtype", None)
        if shape != p.shape:
            return f"gradient at {path_str(path)} has shape {shape}, parameter {p.shape}"
        if dtype != p.dtype:
            return f"gradient at {path_str(path)} has dtype {dtype}, parameter {p.dtype}"
    return None


class DictReader:
    """The structure of a parameter tree made only of plain (nested) ``dict`` nodes, read in
    Python: ten times cheaper than ``jax.tree_util.tree_flatten`` on such trees (jax sorts every
    dict's keys and looks up every leaf's type; this compares the key lists and takes the
    values), which was most of ``opt.step``'s Python cost on a tree of 1000 small leaves.

    :meth:`leaves` accepts exactly the trees of this structure whose dicts list their keys in
    jax's order (as every tree jax builds does) and returns ``None`` for anything else, where
    the caller falls back to ``jax.tree_util``; a leaf of the wrong kind (``None``, a container)
    is left to the caller's shape check.
    """

    def __init__(self, keys: list[Any], children: list[DictReader | None]) -> None:
        self.keys = keys
        self.children = children  # None: a leaf
        self.flat = all(c is None for c in children)

    @classmethod
    def of(cls, tree: Any) -> DictReader | None:
        """The reader of ``tree``'s structure (built by jax: keys in jax's order), or ``None``
        when it holds anything but dicts and arrays."""

        def build(node: Any) -> DictReader | None:
            children: list[DictReader | None] = []
            for value in node.values():
                if type(value) is dict:
                    child = build(value)
                    if child is None:
                        return None
                    children.append(child)
                elif isinstance(value, jax.Array):
                    children.append(None)
                else:
                    return None
            return cls(list(node), children)

        reader = build(tree) if type(tree) is dict and tree else None
        if reader is None:
            return None
        leaves, same = jax.tree.leaves(tree), reader.leaves(tree)
        if same is None or len(same) != len(leaves):
            return None
        if any(a is not b for a, b in zip(same, leaves, strict=True)):
            return None  # not jax's order after all: never guess
        return reader

    def leaves(self, tree: Any) -> list[Any] | None:
        """The leaves of ``tree`` in jax's flatten order, or ``None`` when its dicts do not
        match this structure key for key."""
        if type(tree) is not dict or list(tree) != self.keys:
            return None
        if self.flat:
            return list(tree.values())
        out: list[Any] = []
        for child, value in zip(self.children, tree.values(), strict=True):
            if child is None:
                out.append(value)
                continue
            part = child.leaves(value)
            if part is None:
                return None
            out.extend(part)
        return out
