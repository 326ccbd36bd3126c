"""Parameter names (torch 2.13's ``param_names``) and matching a loaded state dict by them.

A parameter's name is its tree path in torch's dotted form (``{"layer": {"kernel": w}}`` ->
``"layer.kernel"``; list positions and dataclass fields as their index and name).  Our
``state_dict()`` writes every group's names; ``load_state_dict`` uses them to put each saved
entry on the parameter of the same name, whatever the saved order.  A state dict without names
(torch's, when its optimizer was not built from ``named_parameters()``) is read by order, which
is only safe when no two parameters of a group have the same shape: otherwise their state could
be swapped without any shape error, and the load is refused as ambiguous.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import jax


def dotted(path: Sequence[Any]) -> str:
    """A tree path in torch's dotted form."""
    parts = []
    for key in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts)


def names_of(tree: Any) -> list[str]:
    """The dotted names of ``tree``'s leaves, in flatten order."""
    return [dotted(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _is_pair(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)


def from_pairs(params: Any) -> Any:
    """torch's named form, ``[(name, array), ...]`` (``named_parameters()``), as a tree of
    nested dicts split at the dots (``"layer.kernel"`` -> ``{"layer": {"kernel": ...}}``), so
    that the names are the tree paths; anything else unchanged."""
    if not isinstance(params, (list, tuple)) or not params:
        return params
    pairs = [_is_pair(item) for item in params]
    if not any(pairs):
        return params
    if not all(pairs):
        raise ValueError(
            "all optimizer params should be with/without names. Some param names are missing"
        )
    tree: dict[str, Any] = {}
    for name, array in params:
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"parameter name {name!r} nests under another parameter")
        if leaf in node:
            raise ValueError(f"parameter name {name!r} is given twice or nests another")
        node[leaf] = array
    return tree


def align(
    state_dict: Mapping[str, Any],
    names: Sequence[Sequence[str]],
    shapes: Sequence[Sequence[tuple[int, ...]]],
) -> dict[str, Any]:
    """``state_dict`` with each group's ``params`` ids in our order: by ``param_names`` when the
    state dict has them (all of ours must be there, and nothing else), by position otherwise,
    refused when that is ambiguous (two parameters of a group with one shape, and state saved
    for them).  Group count and sizes are checked later, with torch's messages."""
    saved_groups = list(state_dict["param_groups"])
    if len(saved_groups) != len(names):
        return dict(state_dict)
    saved_state = state_dict["state"]
    groups = []
    for g, (saved, own, own_shapes) in enumerate(zip(saved_groups, names, shapes, strict=True)):
        ids = list(saved["params"])
        if len(ids) != len(own):  # torch's size error comes later
            groups.append(dict(saved))
            continue
        saved_names = saved.get("param_names")
        if saved_names is not None:
            saved_names = list(saved_names)
            if len(saved_names) != len(ids) or len(set(saved_names)) != len(saved_names):
                raise ValueError(
                    f"loaded state dict's param_groups[{g}] has {len(saved_names)} param_names "
                    f"for {len(ids)} params, or repeats a name"
                )
            missing = [n for n in own if n not in saved_names]
            unexpected = [n for n in saved_names if n not in own]
            if missing or unexpected:
                raise ValueError(
                    f"loaded state dict's param_groups[{g}] names other parameters: missing "
                    f"{missing}, unexpected {unexpected} (a torch model's names: convert the "
                    f"checkpoint with jaxsched.interop, which maps them to the tree's paths)"
                )
            position = {name: i for i, name in enumerate(saved_names)}
            ids = [ids[position[name]] for name in own]
        else:
            with_state = [
                i for i, pid in enumerate(ids)
                if saved_state.get(pid, saved_state.get(str(pid)))
            ]  # fmt: skip
            counts = Counter(own_shapes[i] for i in with_state)
            shared = sorted(shape for shape, n in counts.items() if n > 1)
            if shared:
                raise ValueError(
                    f"loaded state dict has no param_names and param_groups[{g}] holds several "
                    f"parameters of shape {shared[0]}: matching them by position could put one's "
                    f"state on another without any error.  Save it from a torch optimizer built "
                    f"on model.named_parameters() (torch 2.13 then writes param_names), or "
                    f"convert it with jaxsched.interop"
                )
        groups.append({**saved, "params": ids, "param_names": list(own)})
    return {**state_dict, "param_groups": groups}
