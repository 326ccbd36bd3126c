"""Per-group hyperparameters, functionally: a label-based multi-transform whose numeric
hyperparameters live in the optax state, so they can be read and changed inside ``jax.jit``
without recompiling."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .transforms._registry import SPECS


class GroupedState(NamedTuple):
    """``inner[g]``: group ``g``'s optimizer state (its parameters as a flat list, in the
    parameter tree's flatten order); ``hyperparams[g]``: ``{name: array}``, tuples (``betas``)
    as tuples of arrays, with ``None`` where an element is not numeric."""

    inner: dict[Any, Any]  # keyed by group label
    hyperparams: dict[Any, dict[str, Any]]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.ndim(value) == 0 and jnp.issubdtype(value.dtype, jnp.number)
    return isinstance(value, numbers.Real)


def split_hyperparams(
    values: Mapping[str, Any], static_args: Collection[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword arguments into numeric ones (held as arrays in the state) and the rest
    (booleans, strings, schedules, ``None``, and every name in ``static_args``: loop counts,
    sizes), which shape the computation and stay Python values."""
    dynamic: dict[str, Any] = {}
    static: dict[str, Any] = {}
    dtype = jnp.result_type(float)
    for name, value in values.items():
        if name in static_args:
            static[name] = value
        elif _is_number(value):
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


Factory = Callable[..., optax.GradientTransformation]


def _accepts(factory: Factory) -> tuple[dict[str, Any], bool]:
    """The factory's keyword defaults, and whether it takes any ``**kwargs``."""
    parameters = inspect.signature(factory).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return defaults, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _factories(
    factory: Factory | Mapping[Hashable, Factory], labels: Collection[Hashable]
) -> dict[Hashable, Factory]:
    if not isinstance(factory, Mapping):
        return dict.fromkeys(labels, factory)
    missing = [repr(lb) for lb in labels if lb not in factory]
    unused = [repr(lb) for lb in factory if lb not in labels]
    if missing or unused:
        raise ValueError(
            "grouped: the factories' labels must be the groups' labels; "
            f"groups without a factory: [{', '.join(missing)}], "
            f"factories without a group: [{', '.join(unused)}]"
        )
    return {label: factory[label] for label in labels}


def grouped(
    factory: Factory | Mapping[Hashable, Factory],
    param_labels: Any,
    groups: Mapping[Any, Mapping[str, Any]],
    /,
    *,
    static_args: Collection[str] = (),
    **defaults: Any,
) -> optax.GradientTransformationExtraArgs:
    """One transform per parameter group, with the groups' hyperparameters in the state.

    Args:
      factory: a transform factory of :mod:`jaxsched.transforms` (``jaxsched.sgd``, ...) or any
        factory taking keyword hyperparameters; or ``{label: factory}``, one per group (torch's
        "two optimizers on one model", e.g. one rule for the hidden matrices and AdamW for the
        rest, as one transform).
      param_labels: a pytree with the parameters' structure whose leaves name each leaf's group,
        or a function ``params -> that``.
      groups: ``{label: {name: value}}``, the hyperparameters that differ from ``defaults``.
      static_args: names held as Python values, never traced, even when numeric (a loop count,
        a size): as ``optax.inject_hyperparams(static_args=...)``.  A jaxsched transform's own
        (Muon's ``ns_steps`` and ``ns_coefficients``) are added by themselves.  Changing one
        means building a new transform (the stateful optimizers rebuild, as for a structural
        key).
      **defaults: hyperparameters shared by every group; each group's factory must accept them.

    Group ``g`` runs ``factory_g(**(factory_g's defaults | defaults | groups[g]))``.  Numeric
    values (also inside tuples such as ``betas``) are stored as arrays in
    :class:`GroupedState`; read them with :func:`get_hyperparams` and change them with
    :func:`set_hyperparams`, also inside ``jit``, without recompiling.  Non-numeric values
    (booleans, schedules) and ``static_args`` are fixed at construction.  ``update`` needs
    ``params`` (weight decay is held as a value that may become non-zero); extra keyword
    arguments of ``update`` (``value=loss``, ...) reach every group's transform
    (``optax.GradientTransformationExtraArgs``; a plain transform ignores them).

    Differences from optax: like ``optax.partition`` over ``optax.inject_hyperparams``
    transforms, but with one state entry per group and no recompilation when a value changes.
    """
    groups = {label: dict(overrides) for label, overrides in groups.items()}
    factories = _factories(factory, groups)
    # a jaxsched transform's own structural numbers (Muon's ns_steps) are static by itself
    static_args = frozenset(static_args).union(
        *(spec.static_args for spec in SPECS.values() if spec.factory in factories.values())
    )
    known: set[str] = set()
    merged_values, statics = {}, {}
    for label, overrides in groups.items():
        # Every hyperparameter of the factory is held, its own defaults included (torch's
        # groups carry them all), so that get_hyperparams shows eps or weight_decay too.
        own, open_ended = _accepts(factories[label])
        known |= set(own)
        if not open_ended:
            foreign = sorted(set(defaults) - set(own))
            if foreign:
                name = getattr(factories[label], "__name__", repr(factories[label]))
                raise TypeError(
                    f"grouped: group {label!r}'s factory {name} takes no argument "
                    f"{', '.join(map(repr, foreign))} given as a shared default"
                )
        merged = {**own, **defaults, **overrides}
        factories[label](**merged)  # validates the group's values now, with torch's messages
        merged_values[label] = merged
        statics[label] = split_hyperparams(merged, static_args)[1]
    unknown_static = sorted(static_args - known - set(defaults))
    if unknown_static:
        raise ValueError(
            f"grouped: static_args {unknown_static} are not arguments of any group's factory"
        )

    def members(labels: list[Hashable]) -> dict[Hashable, list[int]]:
        unknown = sorted({repr(lb) for lb in labels if lb not in groups})
        if unknown:
            raise ValueError(
                f"param_labels names groups that have no hyperparameters: {', '.join(unknown)}"
            )
        return {label: [i for i, lb in enumerate(labels) if lb == label] for label in groups}

    def transform(
        label: Hashable, held: Mapping[str, Any]
    ) -> optax.GradientTransformationExtraArgs:
        tx = factories[label](**join_hyperparams(held, statics[label]))
        return optax.with_extra_args_support(tx)

    def init_fn(params):
        leaves = jax.tree.leaves(params)
        index = members(_labels(param_labels, params))
        inner, hyper = {}, {}
        for label, idx in index.items():
            dynamic, _ = split_hyperparams(merged_values[label], static_args)
            inner[label] = transform(label, dynamic).init([leaves[i] for i in idx])
            hyper[label] = dynamic
        return GroupedState(inner, hyper)

    def update_fn(updates, state, params=None, **extra_args):
        # a None gradient stays a leaf here (a per_parameter transform skips that parameter)
        grads, treedef = jax.tree_util.tree_flatten(updates, is_leaf=lambda x: x is None)
        values = None if params is None else treedef.flatten_up_to(params)
        index = members(_labels(param_labels, updates if params is None else params))
        out = list(grads)
        inner = dict(state.inner)
        for label, idx in index.items():
            if not idx:
                continue
            tx = transform(label, state.hyperparams[label])
            sub_params = None if values is None else [values[i] for i in idx]
            sub_updates, inner[label] = tx.update(
                [grads[i] for i in idx], state.inner[label], sub_params, **extra_args
            )
            for i, u in zip(idx, sub_updates, strict=True):
                out[i] = u
        return treedef.unflatten(out), GroupedState(inner, state.hyperparams)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


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
