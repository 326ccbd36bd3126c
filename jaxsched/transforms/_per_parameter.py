"""torch's rule for parameters without a gradient: each parameter keeps its own state and step.

torch skips a parameter whose ``.grad`` is ``None``: no update, no weight decay, no state entry,
and its ``step`` does not advance, so the parameters of one group can be at different steps.
:func:`per_parameter` gives any transform of this package that layout: the inner transform runs
once per leaf on a one-leaf list, each leaf with its own ``count``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax


def _is_none(x: Any) -> bool:
    return x is None


@jax.tree_util.register_pytree_node_class
class Spread(list):
    """A value the inner transform shares across its leaves (``count``, ASGD's ``eta``), held
    once per leaf; a plain ``list`` field holds the inner transform's own per-leaf entries."""

    def tree_flatten(self) -> tuple[list[Any], None]:
        return list(self), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Any) -> Spread:
        del aux
        return cls(children)


def split_state(state: Any, j: int) -> Any:
    """Leaf ``j``'s own state: the inner transform's state for the one-leaf list ``[p_j]``."""
    fields: list[Any] = []
    for value in state:
        if value is None:
            fields.append(None)
        elif isinstance(value, Spread):
            fields.append(value[j])
        else:  # a leaf without such an entry: the inner state of one leaf has None there
            fields.append(None if value[j] is None else [value[j]])
    return type(state)(*fields)


def join_states(states: Sequence[Any]) -> Any:
    """The per-parameter state from the leaves' own (each the inner state of a one-leaf list):
    every field one entry per leaf, shared scalars as :class:`Spread`."""
    fields: list[Any] = []
    for i in range(len(states[0])):
        column = [s[i] for s in states]
        if all(x is None for x in column):
            fields.append(None)
        elif any(isinstance(x, list) for x in column):  # Adafactor: some leaves factored
            fields.append([None if x is None else x[0] for x in column])
        else:
            fields.append(Spread(column))
    return type(states[0])(*fields)


def spread_state(state: Any, count: int) -> Any:
    """A group state (one ``count`` and other scalars shared by the group's ``count`` leaves)
    in the per-parameter layout: each shared scalar copied once per leaf."""
    fields: list[Any] = []
    for value in state:
        if value is None or isinstance(value, list):
            fields.append(value)
        else:
            fields.append(Spread(jnp.copy(value) for _ in range(count)))
    return type(state)(*fields)


def per_parameter(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    r"""``inner`` with torch's semantics for parameters without a gradient.

    Every leaf has its own state, ``count`` included (torch's per-parameter ``step``).  In
    ``update(grads, state, params, *, mask=None)`` a leaf is skipped, as torch skips a
    parameter whose ``.grad`` is ``None``, when

    - its gradient is ``None`` (the pattern is part of the traced structure: a new pattern of
      ``None`` leaves compiles once more under ``jit``), or
    - ``mask`` (a tree like ``grads``, or a prefix of it, of booleans, arrays or Python) is
      false there: the leaf's update is computed and discarded, so every pattern runs the same
      compiled program.

    A skipped leaf gets a zero update (``params`` is then required, for its shape) and keeps
    its state and count unchanged: no weight decay, no moment decay, no bias-correction step.

    The state is ``inner``'s state type with every field a list over the flattened leaves
    (shared scalars such as ``count`` become a :class:`Spread`: one scalar per leaf).  A
    schedule given to ``inner`` is evaluated at each leaf's own count.

    Differences from PyTorch: torch creates a parameter's state at its first gradient; here it
    exists from ``init`` (zeros, ``count`` 0), which gives the same numbers.  Differences from
    optax: ``optax.masked`` leaves masked leaves' updates untouched instead of zeroing them,
    and shares one count across leaves.
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        leaves = jax.tree.leaves(params)
        if not leaves:
            return None
        return join_states([inner.init([p]) for p in leaves])

    def update_fn(grads, state, params=None, *, mask=None, **extra_args):
        grad_leaves, treedef = jax.tree_util.tree_flatten(grads, is_leaf=_is_none)
        param_leaves = (
            [None] * len(grad_leaves) if params is None else (treedef.flatten_up_to(params))
        )
        masks = (
            [True] * len(grad_leaves)
            if mask is None  # a prefix of grads: one flag may cover a whole subtree
            else treedef.flatten_up_to(jax.tree.broadcast(mask, grads, is_leaf=_is_none))
        )
        if params is None and any(g is None for g in grad_leaves):
            raise ValueError(
                "per_parameter: update() needs params when some gradients are None (a skipped "
                "parameter's update is zeros of its shape)"
            )
        if not grad_leaves:
            return grads, state
        updates, states = [], []
        for j, (g, p, keep) in enumerate(zip(grad_leaves, param_leaves, masks, strict=True)):
            own = split_state(state, j)
            if g is None:
                updates.append(jnp.zeros_like(p))
                states.append(own)
                continue
            (u,), new = inner.update([g], own, None if p is None else [p], **extra_args)
            if keep is not True:
                keep = jnp.asarray(keep, bool)
                u = jnp.where(keep, u, jnp.zeros_like(u))
                new = jax.tree.map(lambda n, o, k=keep: jnp.where(k, n, o), new, own)
            updates.append(u)
            states.append(new)
        return treedef.unflatten(updates), join_states(states)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@functools.cache
def per_parameter_factory(
    factory: Callable[..., optax.GradientTransformation],
) -> Callable[..., optax.GradientTransformationExtraArgs]:
    """``factory`` (same signature) whose transforms are wrapped in :func:`per_parameter`."""

    @functools.wraps(factory)
    def make(*args: Any, **kwargs: Any) -> optax.GradientTransformationExtraArgs:
        return per_parameter(factory(*args, **kwargs))

    return make
