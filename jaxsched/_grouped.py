"""Per-group hyperparameters, functionally: a label-based multi-transform whose numeric
hyperparameters live in the optax state, so they can be read and changed inside ``jax.jit``
without recompiling."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class GroupedState(NamedTuple):
    """``inner[g]``: group ``g``'s optimizer state (its parameters as a flat list, in the
    parameter tree's flatten order); ``hyperparams[g]``: ``{name: array}``, tuples (``betas``)
    as tuples of arrays, with ``None`` where an element is not numeric."""

    inner: dict[Hashable, Any]
    hyperparams: dict[Hashable, dict[str, Any]]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.ndim(value) == 0 and jnp.issubdtype(value.dtype, jnp.number)
    return isinstance(value, numbers.Real)


def split_hyperparams(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword arguments into numeric ones (held as arrays in the state) and the rest
    (booleans, strings, schedules, ``None``), which shape the computation and stay static."""
    dynamic, static = {}, {}
    dtype = jnp.result_type(float)
    for name, value in values.items():
        if _is_number(value):
            dynamic[name] = jnp.asarray(value, dtype)
        elif isinstance(value, tuple) and any(_is_number(v) for v in value):
            dynamic[name] = tuple(jnp.asarray(v, dtype) if _is_number(v) else None for v in value)
            static[name] = tuple(None if _is_number(v) else v for v in value)
        else:
            static[name] = value
    return dynamic, static


def join_hyperparams(dynamic: Mapping[str, Any], static: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`split_hyperparams`: the factory's keyword arguments."""
    kwargs = dict(static)
    for name, value in dynamic.items():
        if isinstance(value, tuple):
            kwargs[name] = tuple(
                d if d is not None else s for d, s in zip(value, static[name], strict=True)
            )
        else:
            kwargs[name] = value
    return kwargs


def _labels(param_labels: Any, tree: Any) -> list[Hashable]:
    labels = param_labels(tree) if callable(param_labels) else param_labels
    try:
        return jax.tree.structure(tree).flatten_up_to(labels)
    except (ValueError, TypeError) as err:
        raise ValueError(f"param_labels must have the structure of the parameters: {err}") from None


def grouped(
    factory: Callable[..., optax.GradientTransformation],
    param_labels: Any,
    groups: Mapping[Hashable, Mapping[str, Any]],
    /,
    **defaults: Any,
) -> optax.GradientTransformation:
    """One ``factory`` transform per parameter group, with the groups' hyperparameters in the
    state.

    Args:
      factory: a transform factory of :mod:`jaxsched.transforms` (``jaxsched.sgd``, ...) or any
        factory taking keyword hyperparameters.
      param_labels: a pytree with the parameters' structure whose leaves name each leaf's group,
        or a function ``params -> that``.
      groups: ``{label: {name: value}}``, the hyperparameters that differ from ``defaults``.
      **defaults: hyperparameters shared by every group.

    Group ``g`` runs ``factory(**(factory's defaults | defaults | groups[g]))``.  Numeric
    values (also inside tuples such as ``betas``) are stored as arrays in
    :class:`GroupedState`; read them with :func:`get_hyperparams` and change them with
    :func:`set_hyperparams`, also inside ``jit``, without recompiling.  Non-numeric values
    (booleans, schedules) are fixed at construction.  ``update`` needs ``params`` (weight decay
    is held as a value that may become non-zero).

    Differences from optax: like ``optax.partition`` over ``optax.inject_hyperparams``
    transforms, but with one state entry per group and no recompilation when a value changes.
    """
    groups = {label: dict(overrides) for label, overrides in groups.items()}
    # Every hyperparameter of the factory is held, its own defaults included (torch's groups
    # carry them all), so that get_hyperparams shows eps or weight_decay too.
    signature = inspect.signature(factory).parameters.values()
    defaults = {
        **{p.name: p.default for p in signature if p.default is not inspect.Parameter.empty},
        **defaults,
    }
    statics = {}
    for label, overrides in groups.items():
        merged = {**defaults, **overrides}
        factory(**merged)  # validates the group's values now, with torch's messages
        statics[label] = split_hyperparams(merged)[1]

    def members(labels: list[Hashable]) -> dict[Hashable, list[int]]:
        unknown = sorted({repr(lb) for lb in labels if lb not in groups})
        if unknown:
            raise ValueError(
                f"param_labels names groups that have no hyperparameters: {', '.join(unknown)}"
            )
        return {label: [i for i, lb in enumerate(labels) if lb == label] for label in groups}

    def init_fn(params):
        leaves = jax.tree.leaves(params)
        index = members(_labels(param_labels, params))
        inner, hyper = {}, {}
        for label, idx in index.items():
            dynamic, _ = split_hyperparams({**defaults, **groups[label]})
            tx = factory(**join_hyperparams(dynamic, statics[label]))
            inner[label] = tx.init([leaves[i] for i in idx])
            hyper[label] = dynamic
        return GroupedState(inner, hyper)

    def update_fn(updates, state, params=None):
        treedef = jax.tree.structure(updates)
        grads = treedef.flatten_up_to(updates)
        values = None if params is None else treedef.flatten_up_to(params)
        index = members(_labels(param_labels, updates if params is None else params))
        out = list(grads)
        inner = dict(state.inner)
        for label, idx in index.items():
            if not idx:
                continue
            held = state.hyperparams[label]
            tx = factory(**join_hyperparams(held, statics[label]))
            sub_params = None if values is None else [values[i] for i in idx]
            sub_updates, inner[label] = tx.update(
                [grads[i] for i in idx], state.inner[label], sub_params
            )
            for i, u in zip(idx, sub_updates, strict=True):
                out[i] = u
        return treedef.unflatten(out), GroupedState(inner, state.hyperparams)

    return optax.GradientTransformation(init_fn, update_fn)


def _grouped_states(state: Any) -> list[GroupedState]:
    return [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, GroupedState))
        if isinstance(s, GroupedState)
    ]


def _the_grouped_state(state: Any) -> GroupedState:
    found = _grouped_states(state)
    if len(found) != 1:
        raise ValueError(
            f"expected exactly one jaxsched.grouped state inside this optax state, found "
            f"{len(found)}"
        )
    return found[0]


def get_hyperparams(state: Any) -> dict[Hashable, dict[str, Any]]:
    """``{group: {name: value}}`` of the numeric hyperparameters held by a :func:`grouped`
    state (found anywhere inside ``state``, e.g. in an ``optax.chain``)."""
    return {g: dict(h) for g, h in _the_grouped_state(state).hyperparams.items()}


def set_hyperparams(state: Any, group: Hashable, **values: Any) -> Any:
    """Return ``state`` with group ``group``'s hyperparameters replaced (same dtypes, so a
    jitted step keeps its compilation).  Works on concrete and traced values alike."""
    target = _the_grouped_state(state)
    if group not in target.hyperparams:
        raise KeyError(f"no parameter group {group!r}; groups: {list(target.hyperparams)}")
    current = target.hyperparams[group]
    new = dict(current)
    for name, value in values.items():
        if name not in current:
            raise ValueError(
                f"{name!r} is not a numeric hyperparameter of group {group!r}; "
                f"these are: {sorted(current)}"
            )
        old = current[name]
        if isinstance(old, tuple):
            if not isinstance(value, (tuple, list)) or len(value) != len(old):
                raise ValueError(f"{name} expects {len(old)} values, but got {value!r}")
            new[name] = tuple(
                None if o is None else jnp.asarray(v, o.dtype)
                for o, v in zip(old, value, strict=True)
            )
        else:
            new[name] = jnp.asarray(value, old.dtype)
    hyper = {**target.hyperparams, group: new}
    return jax.tree.map(
        lambda s: s._replace(hyperparams=hyper) if s is target else s,
        state,
        is_leaf=lambda x: isinstance(x, GroupedState),
    )
