"""Reading a scheduled hyperparameter (the learning rate a recipe logs) from an optax state.

A transform of :mod:`jaxsched.transforms` evaluates each hyperparameter at its state's
``count`` (the number of updates already applied) and keeps nothing else, so reading the
learning rate costs nothing until it is asked for: :func:`current_value` evaluates the same
schedule at the same count.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp

from ._grouped import GroupedState
from .transforms._common import value_at


def _counts(state: Any) -> list[Any]:
    """The ``count`` of every transform state (a ``NamedTuple`` with that field) in ``state``."""
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            if "count" in node._fields:
                found.append(node.count)
                return
            for child in node:
                visit(child)
        elif isinstance(node, (tuple, list)):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for child in node.values():
                visit(child)

    visit(state)
    return found


def current_value(value: Any, state: Any, *, group: Hashable | None = None) -> jax.Array:
    """``value`` (a float, an array or a schedule ``count -> value``) as the next update of the
    transform that owns ``state`` will use it: evaluated at that transform's ``count``.  After
    an update, ``current_value(lr, state_before)`` is the lr that update used, as torch's
    ``group["lr"]`` read before ``optimizer.step()``.  Inside ``jit`` too.

    ``state`` is the transform's state or an optax state holding exactly one jaxsched transform
    state (an ``optax.chain``); for a :func:`jaxsched.grouped` state, ``group`` names the group
    (whose numeric values :func:`jaxsched.get_hyperparams` reads directly).
    """
    if group is not None:
        grouped = [
            s
            for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, GroupedState))
            if isinstance(s, GroupedState)
        ]
        if len(grouped) != 1:
            raise ValueError(f"expected one jaxsched.grouped state, found {len(grouped)}")
        if group not in grouped[0].inner:
            raise KeyError(f"no parameter group {group!r}; groups: {list(grouped[0].inner)}")
        state = grouped[0].inner[group]
    counts = _counts(state)
    if len(counts) != 1:
        raise ValueError(
            f"expected the state of one transform (one count), found {len(counts)} counts"
            + ("; name the group of a jaxsched.grouped state" if counts else "")
        )
    (count,) = counts
    if isinstance(count, list):
        raise ValueError(
            "a per_parameter state counts steps per parameter: evaluate the schedule at the "
            "count of the parameter you mean (state.count[i])"
        )
    return jnp.asarray(value_at(value, count))
