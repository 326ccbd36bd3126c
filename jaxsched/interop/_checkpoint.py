"""A whole training checkpoint between torch and a :mod:`jaxsched.optim` run: model weights,
optimizer state (through the weights' name and layout map), schedulers and GradScaler.

torch's conventional checkpoint is a dict (torchvision's reference: ``{"model", "optimizer",
"lr_scheduler", "scaler", "epoch", "args"}``; nanoGPT: ``{"model", "optimizer", "iter_num",
...}``); the keys are arguments here.  Loading sets the optimizer's parameters from the
checkpoint's weights in the same call, so the weights and the optimizer state cannot come from
two different points of the run.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ..optim import _param_names
from . import _flax_trees, _layouts, _links, _tensors, _weights

Schedulers = Any  # one scheduler (under ``scheduler_key``) or {checkpoint key: scheduler}


def _read(checkpoint: Any) -> Mapping[str, Any]:
    if isinstance(checkpoint, (str, os.PathLike)):
        torch = _tensors.torch_module()
        try:
            return torch.load(checkpoint, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # e.g. torchvision's "args" (a Namespace)
            raise ValueError(
                f"{os.fspath(checkpoint)} holds objects torch.load(weights_only=True) refuses "
                f"(torchvision's reference saves its argparse 'args'); if you trust the file, "
                f"load it with torch.load(path, weights_only=False) and pass the dict"
            ) from error
    if not isinstance(checkpoint, Mapping):
        raise TypeError(
            f"checkpoint must be a path or the dict torch.save wrote, got "
            f"{type(checkpoint).__name__}"
        )
    return checkpoint


def _scheduler_map(schedulers: Schedulers, key: str) -> dict[str, Any]:
    if schedulers is None:
        return {}
    if isinstance(schedulers, Mapping):
        return dict(schedulers)
    return {key: schedulers}


def _refuse(optimizer: Any) -> None:
    if type(optimizer).__name__ == "LBFGS":
        raise NotImplementedError(
            "LBFGS keeps its history as vectors over all parameters in torch's order and "
            "layout; converting it is not supported (start its history afresh)"
        )


def _entry(
    field: str, value: Any, param_shape: tuple[int, ...], convert: Any, layout: Any, where: str
) -> Any:
    """One optimizer-state entry through the parameter's layout: arrays of the parameter's
    shape are converted, scalars kept; any other shape under a non-trivial layout (factored
    statistics) is refused rather than guessed."""
    if not (_tensors.is_tensor(value) or isinstance(value, np.ndarray)):
        return value
    array = _tensors.to_numpy(value)
    if array.ndim == 0 or layout is _layouts.SAME:
        return array
    if tuple(array.shape) == param_shape:
        return convert(array)
    raise NotImplementedError(
        f"{where}: state entry {field!r} of shape {tuple(array.shape)} (the parameter is "
        f"{param_shape}) cannot follow the {layout.name} layout"
    )


def _torch_names_by_order(table: _links.LinkTable, own: set[str]) -> list[str]:
    """torch's ``model.parameters()`` order: the state dict's entries that are parameters of
    the optimizer (buffers, tied repeats and counters left out)."""
    return [link.torch_name for link in table.links if link.flax_name in own]


def _refuse_ambiguous_order(
    state: Mapping[Any, Any], ids: list[Any], names: list[str], model_sd: Mapping[str, Any]
) -> None:
    seen: dict[tuple[int, ...], str] = {}
    for pid, name in zip(ids, names, strict=True):
        if not state.get(pid, state.get(str(pid))):
            continue
        shape = _tensors.shape_of(model_sd[name])
        if shape in seen:
            raise ValueError(
                f"the torch optimizer state has no param_names, and {seen[shape]!r} and "
                f"{name!r} share the shape {shape}: matching by position could put one's state "
                f"on the other without any error.  Save from a torch optimizer built on "
                f"model.named_parameters(), pass param_names=, or by_model_order=True if it "
                f"was built on model.parameters()"
            )
        seen[shape] = name


def load_torch_checkpoint(
    optimizer: Any,
    checkpoint: Any,
    *,
    variables: Any = None,
    schedulers: Schedulers = None,
    scaler: Any = None,
    rules: _links.Rules = None,
    layouts: _links.Layouts = None,
    param_names: Sequence[Sequence[str]] | None = None,
    by_model_order: bool = False,
    model_key: str = "model",
    optimizer_key: str = "optimizer",
    scheduler_key: str = "lr_scheduler",
    scaler_key: str = "scaler",
) -> dict[str, Any]:
    """Continue a torch run here: load ``checkpoint`` (a path for ``torch.load(...,
    weights_only=True)``, or the dict) into ``optimizer`` and its schedulers.

    - The weights ``checkpoint[model_key]`` are converted by name (:func:`torch_to_flax`) to
      the form of ``variables`` (linen variables with ``batch_stats``, an nnx ``State`` or
      ``Module``), or to ``optimizer.params`` when ``variables`` is not given; the optimizer's
      parameters are set from them in the same call (one source of truth).
    - The optimizer state ``checkpoint[optimizer_key]`` is matched by its ``param_names``
      (torch 2.13 writes them when the optimizer was built on ``named_parameters()``), else
      by ``param_names=`` given here (torch names, one list per group), else, for a single
      group, by torch's ``model.parameters()`` order: only where that cannot swap state (no
      two parameters with state share a shape) or where you vouch for it with
      ``by_model_order=True`` (the torch optimizer was built on ``model.parameters()``).
      Several unnamed groups are refused.
      Every buffer of a parameter's shape goes through that parameter's layout.  The
      optimizer's groups must be torch's, in torch's order (build them with
      :func:`jaxsched.optim.split_groups` and the recipe's rule).
    - ``schedulers`` (one, read from ``checkpoint[scheduler_key]``, or ``{key: scheduler}``)
      and ``scaler`` (``checkpoint[scaler_key]``) load torch's state dicts.

    Returns ``{"model": <converted weights>, **the checkpoint's other entries}`` (``epoch``,
    ``args``, ...).  Everything is converted and checked before anything changes.
    """
    _refuse(optimizer)
    checkpoint = _read(checkpoint)
    model_sd = checkpoint[model_key]
    tree = _flax_trees.read(optimizer.params if variables is None else variables)
    table = _weights.link_table(model_sd, tree, rules, layouts)
    converted = _weights.converted_leaves(model_sd, tree, table)
    by_flax = table.by_flax_name()
    by_torch = table.by_torch_name()
    own_names = _param_names.names_of(optimizer.params)
    missing = [n for n in own_names if n not in by_flax]
    if missing:
        raise ValueError(f"the optimizer's parameters {missing} are not in the model's weights")
    new_params = _unflatten_like(
        optimizer.params, [converted[by_flax[n].flax_path] for n in own_names]
    )
    state_dict = _optimizer_state(
        checkpoint[optimizer_key], model_sd, table, by_torch, set(own_names), param_names,
        by_model_order,
    )  # fmt: skip
    scheduler_map = _scheduler_map(schedulers, scheduler_key)
    for key in [*scheduler_map, *([scaler_key] if scaler is not None else [])]:
        if key not in checkpoint:
            raise KeyError(f"checkpoint has no {key!r} entry (keys: {sorted(checkpoint)})")
    optimizer.load_state_dict(state_dict)  # validates everything before changing anything
    optimizer.params = new_params
    for key, scheduler in scheduler_map.items():
        scheduler.load_state_dict(checkpoint[key])
    if scaler is not None:
        scaler.load_state_dict(checkpoint[scaler_key])
    used = {model_key, optimizer_key, *scheduler_map, *([scaler_key] if scaler else [])}
    model = tree.rebuild(_flax_trees.with_leaves(tree.pure, converted))
    return {"model": model, **{k: v for k, v in checkpoint.items() if k not in used}}


def _unflatten_like(params: Any, leaves: list[Any]) -> Any:
    return jax.tree.structure(params).unflatten(leaves)


def _optimizer_state(
    torch_sd: Mapping[str, Any],
    model_sd: Mapping[str, Any],
    table: _links.LinkTable,
    by_torch: Mapping[str, _links.Link],
    own: set[str],
    param_names: Sequence[Sequence[str]] | None,
    by_model_order: bool,
) -> dict[str, Any]:
    """torch's optimizer state dict with our names and layouts (ids kept)."""
    groups = list(torch_sd["param_groups"])
    if param_names is not None and len(param_names) != len(groups):
        raise ValueError(f"param_names has {len(param_names)} lists for {len(groups)} param_groups")
    state = torch_sd["state"]
    out_state: dict[Any, dict[str, Any]] = {}
    out_groups = []
    for g, group in enumerate(groups):
        ids = list(group["params"])
        names = group.get("param_names")
        if param_names is not None:
            names = list(param_names[g])
        if names is None:
            if len(groups) > 1:
                raise ValueError(
                    "the torch optimizer state has several param_groups and no param_names: "
                    "which parameter each entry belongs to is unknown.  Build the torch "
                    "optimizer on model.named_parameters() (torch 2.13 then saves the names) or "
                    "pass param_names=[[torch names of group 0], ...]"
                )
            names = _torch_names_by_order(table, own)
            if len(names) == len(ids) and not by_model_order:
                _refuse_ambiguous_order(state, ids, names, model_sd)
        if len(names) != len(ids):
            raise ValueError(
                f"param_groups[{g}] has {len(ids)} params and {len(names)} param_names"
            )
        flax_names = []
        for pid, name in zip(ids, names, strict=True):
            link = by_torch.get(name) or by_torch.get(table.tied.get(name, ""))
            if link is None or link.flax_name not in own:
                raise ValueError(
                    f"param_groups[{g}] names {name!r}, which is not one of the optimizer's "
                    f"parameters in the model's weights"
                )
            flax_names.append(link.flax_name)
            entries = state.get(pid, state.get(str(pid)))
            if entries:
                shape = _tensors.shape_of(model_sd[link.torch_name])
                where = f"optimizer state of {name!r}"
                out_state[pid] = {
                    field: _entry(field, value, shape, link.layout.to_flax, link.layout, where)
                    for field, value in entries.items()
                }
        hyper = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        out_groups.append({**hyper, "params": ids, "param_names": flax_names})
    return {"state": out_state, "param_groups": out_groups}


def to_torch_checkpoint(
    optimizer: Any,
    schedulers: Schedulers = None,
    scaler: Any = None,
    *,
    variables: Any = None,
    names: Mapping[str, Any] | None = None,
    rules: _links.Rules = None,
    layouts: _links.Layouts = None,
    extra: Mapping[str, Any] | None = None,
    model_key: str = "model",
    optimizer_key: str = "optimizer",
    scheduler_key: str = "lr_scheduler",
    scaler_key: str = "scaler",
) -> dict[str, Any]:
    """Hand this run to torch: a checkpoint dict that ``torch.save`` writes and
    ``torch.load(weights_only=True)`` reads back, laid out as :func:`load_torch_checkpoint`
    reads it.

    - ``checkpoint[model_key]``: the weights as a torch state dict (:func:`flax_to_torch`),
      the parameters taken from ``optimizer.params`` (the trained ones) and the rest
      (``batch_stats``) from ``variables`` when given; ``names``: the torch model's
      ``state_dict()`` or the model (keys, order, dtypes, tied entries and counters;
      recommended).
    - ``checkpoint[optimizer_key]``: the optimizer's state dict with torch's names
      (``param_names``) and layouts, parameters numbered in the torch model's order within
      each group (what ``torch.optim`` built on ``named_parameters()`` in that order expects),
      every array a tensor.
    - the schedulers' and ``scaler``'s state dicts, and ``extra`` entries (``epoch``, ...).
    """
    _refuse(optimizer)
    names, layouts = _weights.torch_side(names, layouts)
    source = optimizer.params if variables is None else variables
    tree = _flax_trees.read(source)
    flat = _flax_trees.leaves(tree.pure)
    own_pairs = list(
        zip(_param_names.names_of(optimizer.params), jax.tree.leaves(optimizer.params), strict=True)
    )
    own = dict(own_pairs)
    current = {}
    for path in flat:
        name = _links.flax_name(path, tree.collection)
        if name in own:
            current[path] = own.pop(name)  # the optimizer's parameters are the trained ones
    if own:
        raise ValueError(f"variables lack the optimizer's parameters {sorted(own)}")
    tree = dataclasses.replace(tree, pure=_flax_trees.with_leaves(tree.pure, current))
    model_sd = _weights.tree_to_torch(tree, names, rules, layouts)
    table = _weights.export_table(tree, names, rules, layouts)
    shapes = {name: tuple(np.shape(v)) for name, v in own_pairs}
    optimizer_sd = _torch_optimizer_state(optimizer.state_dict(), table, list(model_sd), shapes)
    out: dict[str, Any] = {
        model_key: model_sd,
        optimizer_key: _tensors.weights_only_safe(optimizer_sd),
    }
    for key, scheduler in _scheduler_map(schedulers, scheduler_key).items():
        out[key] = _tensors.weights_only_safe(scheduler.state_dict())
    if scaler is not None:
        out[scaler_key] = _tensors.weights_only_safe(scaler.state_dict())
    out.update(extra or {})
    return out


def _torch_optimizer_state(
    ours: Mapping[str, Any],
    table: _links.LinkTable,
    torch_order: list[str],
    flax_shapes: Mapping[str, tuple[int, ...]],
) -> dict[str, Any]:
    """Our optimizer state dict in torch's names and layouts, the parameters of each group
    renumbered in the torch model's order."""
    torch_of = {link.flax_name: link.torch_name for link in table.links}
    layout_of = {link.flax_name: link.layout for link in table.links}
    position = {name: i for i, name in enumerate(torch_order)}
    state: dict[int, dict[str, Any]] = {}
    groups = []
    next_id = 0
    for group in ours["param_groups"]:
        pairs = sorted(
            zip(group["params"], group["param_names"], strict=True),
            key=lambda pair: position[torch_of[pair[1]]],
        )
        ids = []
        for pid, flax_name in pairs:
            entries = ours["state"].get(pid)
            if entries:
                layout = layout_of[flax_name]
                where = f"optimizer state of {flax_name!r}"
                state[next_id] = {
                    field: _entry(field, v, flax_shapes[flax_name], layout.to_torch, layout, where)
                    for field, v in entries.items()
                }
            ids.append(next_id)
            next_id += 1
        hyper = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        groups.append({**hyper, "params": ids, "param_names": [torch_of[n] for _, n in pairs]})
    return {"state": state, "param_groups": groups}
