"""Parameter groups by rule: torch recipes pick a group's parameters by name or shape
(torchvision's norm layers and biases without weight decay, nanoGPT's ``p.dim() >= 2``, Hugging
Face's ``no_decay`` list); :func:`split_groups` does the same on a parameter tree."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from . import _param_names, _trees

Selector = Callable[[str, Any], bool] | str | Sequence[str]


def _accepts(selector: Selector, name: str, leaf: Any) -> bool:
    if callable(selector):
        return bool(selector(name, leaf))
    patterns = [selector] if isinstance(selector, str) else list(selector)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _check_selector(g: int, selector: Any) -> None:
    if callable(selector) or isinstance(selector, str):
        return
    if isinstance(selector, Sequence) and all(isinstance(p, str) for p in selector):
        return
    raise TypeError(
        f"groups[{g}]['params'] must be a predicate (name, leaf) -> bool, a glob pattern on the "
        f"dotted parameter names, or a list of patterns; got {type(selector).__name__}"
    )


def split_groups(params: Any, groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """torch-style parameter groups cut from one tree by rules.

    Each entry of ``groups`` is a group dict whose ``"params"`` is a *selector* instead of
    arrays: a predicate ``(name, leaf) -> bool`` (``name`` is the leaf's dotted tree path, the
    form of torch's ``named_parameters()``: ``"blocks.0.attn.kernel"``), a glob pattern on that
    name (``"*.bias"``), or a list of patterns.  Every leaf goes to the **first** group that
    selects it; the other keys of the group (``lr``, ``weight_decay``, ...) are kept.  A leaf no
    group selects, or a group that selects nothing, raises ``ValueError`` naming it (nothing is
    left out of the optimizer silently).  Returns the list of group dicts that every
    ``jaxsched.optim`` constructor takes, each ``"params"`` the sub-tree of its leaves::

        groups = optim.split_groups(params, [
            {"params": lambda name, p: p.ndim >= 2, "weight_decay": 0.1},  # nanoGPT
            {"params": "*", "weight_decay": 0.0},
        ])
        opt = optim.AdamW(groups, lr=6e-4)

    ``params`` may be a nested dict, an nnx ``State`` or torch's ``[(name, array), ...]``.
    """
    tree = _trees.plain(_param_names.from_pairs(params))
    specs = [dict(g) for g in groups]
    if not specs:
        raise ValueError("split_groups needs at least one group")
    for g, spec in enumerate(specs):
        if "params" not in spec:
            raise KeyError(f"groups[{g}] has no 'params' selector: {spec!r}")
        _check_selector(g, spec["params"])
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    chosen: list[int] = []
    for path, leaf in flat:
        name = _param_names.dotted(path)
        for g, spec in enumerate(specs):
            if _accepts(spec["params"], name, leaf):
                chosen.append(g)
                break
        else:
            raise ValueError(f"split_groups: no group selects the parameter {name!r}")
    out = []
    for g, spec in enumerate(specs):
        paths = [path for (path, _), c in zip(flat, chosen, strict=True) if c == g]
        if not paths:
            raise ValueError(
                f"split_groups: groups[{g}] selects no parameter (selector {spec['params']!r}) "
                f"among those left by the groups before it"
            )
        out.append({**spec, "params": _sub_tree(tree, paths)})
    return out


def _sub_tree(tree: Any, paths: list[tuple]) -> dict:
    """The nested dict of ``tree``'s leaves at ``paths`` (groups of a tree merge as dicts)."""
    out: dict = {}
    for path in paths:
        node, source = out, tree
        for key in path[:-1]:
            part = _key(key)
            source = source[part]
            node = node.setdefault(part, {})
        last = _key(path[-1])
        node[last] = source[last]
    return out


def _key(entry: Any) -> Any:
    if isinstance(entry, jax.tree_util.DictKey):
        return entry.key
    raise TypeError(
        f"split_groups cuts trees of nested dicts (groups merge as dicts); found "
        f"{type(entry).__name__} {entry} in a path: give that part as a dict"
    )
