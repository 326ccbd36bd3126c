"""torch's ``state_dict`` layout for the stateful optimizers, both ways.

Parameters are numbered across groups in group order and, within a group, in the parameter
tree's flatten order.  Each transform state is a ``NamedTuple`` whose fields carry torch's
per-parameter names (``exp_avg``, ``momentum_buffer``, ...); ``count`` is torch's ``step``
(a float32 scalar per parameter); per-leaf fields are lists (one entry per parameter, ``None``
where torch keeps nothing) and scalar fields are shared by the group's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..transforms._spec import TorchSpec


def _numpy(value: Any) -> np.ndarray:
    """A numpy copy of an array or of a torch tensor (without importing torch)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        try:
            return value.numpy().copy()
        except TypeError:  # bfloat16 has no numpy dtype in torch
            return value.float().numpy()
    return np.array(value)


def _plain(value: Any) -> Any:
    """Hyperparameter values as Python objects: a tensor or array becomes a float, except a
    float32 one (torch's float32 tensor lr), which stays a 0-d float32 array, since torch derives
    its scalars in float32 (:func:`~jaxsched.transforms._common.float32_array`)."""
    if hasattr(value, "detach") or isinstance(value, (np.ndarray, np.generic)):
        array = _numpy(value)
        if array.dtype == np.float32 and array.size == 1:
            return array.reshape(())
        return array.item()
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def host_copy(value: Any) -> np.ndarray:
    """A numpy copy of a state array for ``state_dict()``; an array split across processes
    (``jax.distributed``) cannot be copied here, and says what to use instead."""
    if not getattr(value, "is_fully_addressable", True):
        raise RuntimeError(
            "state_dict() needs the whole optimizer state in this process, but it is split "
            "across processes (jax.distributed); checkpoint opt.opt_state and opt.params with "
            "orbax instead (orbax.checkpoint.StandardCheckpointer saves each process's shards)"
        )
    return np.array(value)


def to_torch_layout(
    spec: TorchSpec, groups: Sequence[tuple[Mapping[str, Any], int, Any]]
) -> dict[str, Any]:
    """torch's ``state_dict`` from each group's ``(values, number of parameters, state)``
    (the state in the transform's layout); parameters numbered across groups in order."""
    out: dict[int, dict[str, Any]] = {}
    saved_groups = []
    first = 0
    for values, size, inner in groups:
        ids = list(range(first, first + size))
        # one count per group, or one per parameter (the per-parameter mode)
        if isinstance(inner.count, list):
            counts = [int(host_copy(c)) for c in inner.count]
        else:
            counts = [int(host_copy(inner.count))] * size
        for j, pid in enumerate(ids):
            count = counts[j]
            if count == 0 and not spec.state_at_construction:
                continue  # torch creates the state at a parameter's first gradient
            own = type(inner)(*(v[j] if isinstance(v, list) else v for v in inner))
            entry: dict[str, Any] = {}
            for field in inner._fields:
                value = getattr(own, field)
                if field == "count":
                    if spec.step_entry:
                        entry["step"] = np.asarray(count, np.float32)
                elif value is not None and _keeps(spec, field, values, own):
                    entry[field] = host_copy(value)
            if entry:
                out[pid] = entry
        saved = dict(values)
        saved["params"] = ids
        saved_groups.append(saved)
        first += size
    return {"state": out, "param_groups": saved_groups}


def _keeps(spec: TorchSpec, field: str, values: Mapping[str, Any], state: Any) -> bool:
    """Whether torch's state holds ``field`` for a parameter of a group with ``values``, whose
    own state is ``state``."""
    condition = spec.state_when.get(field)
    return condition is None or bool(condition(values, state))


def read_torch_layout(
    state_dict: Mapping[str, Any],
    *,
    spec: TorchSpec,
    sizes: Sequence[int],
    defaults: Mapping[str, Any],
    required: Sequence[str],
    check_values: Callable[[Mapping[str, Any]], None],
    state_shapes: Callable[[list[dict[str, Any]]], Mapping[int, Any]],
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Validate a state dict (ours or torch's) against an optimizer with groups of ``sizes``
    parameters; return each group's values and its loaded state fields (host arrays, a list
    field as ``{position: array}``).  Reads only: the caller replaces, all or nothing.

    ``required``: the keys every group must hold; ``check_values(values)`` raises torch's
    error for a bad value; ``state_shapes(values)``: the per-group state shapes they imply."""
    saved_groups = list(state_dict["param_groups"])
    saved_state = state_dict["state"]
    if len(saved_groups) != len(sizes):
        raise ValueError("loaded state dict has a different number of parameter groups")
    for saved, size in zip(saved_groups, sizes, strict=True):
        if len(saved["params"]) != size:
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of "
                "optimizer's group"
            )
    values = [{k: _plain(v) for k, v in s.items() if k != "params"} for s in saved_groups]
    for v in values:  # pairs saved through JSON or orbax come back as lists
        for key, value in v.items():
            if isinstance(value, list) and isinstance(defaults.get(key), tuple):
                v[key] = tuple(value)
    for g, v in enumerate(values):
        missing = [k for k in required if k not in v]
        if missing:
            raise ValueError(
                f"loaded state dict's param_groups[{g}] lacks {missing}: it does not come from "
                f"a {spec.name} (nothing was changed)"
            )
        check_values(v)
    shapes = state_shapes(values)
    loaded = {}
    for g, saved in enumerate(saved_groups):
        entries = [saved_state.get(pid, saved_state.get(str(pid), {})) for pid in saved["params"]]
        loaded[g] = _loaded_fields(spec, shapes[g], entries, saved["params"])
    return values, loaded


def needs_per_parameter(state_dict: Mapping[str, Any]) -> bool:
    """Whether a state dict holds parameters of one group at different steps (or some with
    state and some without, as torch leaves the parameters that never had a gradient): only
    the per-parameter layout continues it exactly."""
    saved_state = state_dict["state"]
    for saved in state_dict["param_groups"]:
        entries = [saved_state.get(pid, saved_state.get(str(pid), {})) for pid in saved["params"]]
        with_state = [e for e in entries if e]
        if with_state and len(with_state) < len(entries):
            return True
        if len({float(_numpy(e["step"]).item()) for e in with_state if "step" in e}) > 1:
            return True
    return False


def _checked(array: np.ndarray, old: Any, field: str, pid: Any) -> np.ndarray:
    if array.shape != old.shape:
        raise ValueError(
            f"loaded state dict has {field} of shape {array.shape} for parameter {pid}, "
            f"expected {old.shape}"
        )
    return np.asarray(array, old.dtype)


def _per_parameter_fields(
    spec: TorchSpec, shapes: Any, entries: list[Mapping], ids: list
) -> dict[str, dict[int, np.ndarray]]:
    """:func:`_loaded_fields` for the per-parameter layout (every field a list): each
    parameter's count and buffers from its own entry; no entry: a fresh state (count 0)."""
    fields: dict[str, dict[int, np.ndarray]] = {}
    for field in shapes._fields:
        olds = getattr(shapes, field)
        if olds is None:
            continue
        found = {}
        for j, (entry, pid) in enumerate(zip(entries, ids, strict=True)):
            old = olds[j]
            if old is None or not entry:
                continue
            if field == "count":
                # SGD keeps no step: an entry means "past the first step"
                step = _numpy(entry["step"]).item() if spec.step_entry and "step" in entry else 1
                found[j] = np.asarray(int(step), old.dtype)
            elif field == "momentum_steps":  # SGD: a saved buffer is "a step used momentum"
                found[j] = np.asarray(int("momentum_buffer" in entry), old.dtype)
            elif field in entry:
                found[j] = _checked(_numpy(entry[field]), old, field, pid)
        fields[field] = found
    return fields


def _loaded_fields(spec: TorchSpec, shapes: Any, entries: list[Mapping], ids: list) -> dict:
    """``{field: value}`` read from the saved entries of one group as host arrays (a list
    field: ``{position: array}``), checked against the state's ``shapes``."""
    if isinstance(shapes.count, list):
        return _per_parameter_fields(spec, shapes, entries, ids)
    fields: dict[str, Any] = {}
    with_state = [e for e in entries if e]
    if "momentum_steps" in shapes._fields and shapes.momentum_steps is not None:
        # SGD: a saved buffer is torch's "a step used momentum"
        buffered = any("momentum_buffer" in e for e in with_state)
        fields["momentum_steps"] = np.asarray(int(buffered), shapes.momentum_steps.dtype)
    if with_state and len(with_state) < len(entries):
        empty = [pid for pid, e in zip(ids, entries, strict=True) if not e]
        raise ValueError(
            f"loaded state dict has no state for parameters {empty} while others of their "
            f"group have some (torch creates it lazily, e.g. for parameters that were frozen), "
            f"which this optimizer cannot hold"
        )
    steps = {float(_numpy(e["step"]).item()) for e in with_state if "step" in e}
    if len(steps) > 1:
        raise ValueError(
            f"loaded state dict has different step counts {sorted(steps)} within one parameter "
            f"group (torch counts per parameter, e.g. after some were frozen), which this "
            f"optimizer cannot hold"
        )
    for field in shapes._fields:
        old = getattr(shapes, field)
        if field == "count":
            if spec.step_entry:
                saved_steps = [e["step"] for e in with_state if "step" in e]
                count = int(_numpy(saved_steps[0]).item()) if saved_steps else 0
            else:  # SGD keeps no step: a saved buffer means "past the first step"
                count = 1 if any(field_name in e for e in with_state for field_name in e) else 0
            fields[field] = np.asarray(count, old.dtype)
        elif isinstance(old, list):
            found = {}
            for j, (entry, pid) in enumerate(zip(entries, ids, strict=True)):
                if field in entry and old[j] is not None:
                    found[j] = _checked(_numpy(entry[field]), old[j], field, pid)
            fields[field] = found
        elif old is not None:
            saved = [e[field] for e in with_state if field in e]
            if saved:
                fields[field] = np.asarray(_numpy(saved[0]), old.dtype)
    return fields


def overlay(fresh: Any, loaded: Mapping[str, Any]) -> Any:
    """A fresh group state with the loaded fields (host arrays) in place of its own."""
    fields = {}
    for field in fresh._fields:
        value, new = getattr(fresh, field), loaded.get(field)
        if isinstance(value, list) and isinstance(new, dict):
            fields[field] = type(value)(new.get(j, x) for j, x in enumerate(value))
        elif new is not None and not isinstance(new, dict):
            fields[field] = new
        else:
            fields[field] = value
    return type(fresh)(**fields)
