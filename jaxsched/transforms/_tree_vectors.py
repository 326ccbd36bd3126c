"""A parameter tree as one vector, without concatenating it.

torch's LBFGS flattens every parameter into one vector (``torch.cat``).  Here the vector stays
a tree: each leaf keeps its shape, dtype and sharding, and the reductions (dot products, max
norms) are reduced per leaf then summed in leaf order, so nothing is gathered onto one device.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def dot(a: Any, b: Any) -> jax.Array:
    """``<a, b>`` over every leaf (an elementwise product then a sum: a sharded leaf reduces
    where it lies, and explicitly sharded meshes accept it)."""
    parts = [jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def abs_max(a: Any) -> jax.Array:
    """``max |a_i|`` over every element of every leaf."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree.leaves(a)]))


def abs_sum(a: Any) -> jax.Array:
    """``sum |a_i|`` over every element of every leaf."""
    parts = [jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(a)]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def axpy(alpha: Any, x: Any, y: Any) -> Any:
    """``y + alpha x`` leaf by leaf (torch's ``y.add_(x, alpha=alpha)``)."""
    return jax.tree.map(lambda xi, yi: yi + alpha.astype(yi.dtype) * xi, x, y)


def scale(alpha: Any, x: Any) -> Any:
    """``alpha x`` leaf by leaf."""
    return jax.tree.map(lambda xi: xi * alpha.astype(xi.dtype), x)


def sub(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.subtract, a, b)


def neg(a: Any) -> Any:
    return jax.tree.map(jnp.negative, a)


def row(stack: Any, i: jax.Array) -> Any:
    """Entry ``i`` of a tree whose leaves carry a leading history axis."""
    return jax.tree.map(lambda s: jax.lax.dynamic_index_in_dim(s, i, keepdims=False), stack)


def set_row(stack: Any, i: jax.Array, value: Any) -> Any:
    """``stack`` with entry ``i`` of every leaf replaced by ``value``'s leaf."""
    return jax.tree.map(
        lambda s, v: jax.lax.dynamic_update_index_in_dim(s, v.astype(s.dtype), i, 0), stack, value
    )
