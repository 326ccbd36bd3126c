r"""Gradient clipping with ``torch.nn.utils``' semantics, as functions and as optax transforms.

With :math:`p` = ``norm_type`` and :math:`g_i` the gradient leaves:

.. math::
    N = \Big\| \big(\|g_1\|_p, \dots, \|g_k\|_p\big) \Big\|_p, \qquad
    c = \min\Big(1, \frac{\text{max\_norm}}{N + 10^{-6}}\Big), \qquad g_i \leftarrow c\, g_i

(every leaf is multiplied by :math:`c`, also when :math:`c = 1`, as torch does).  ``norm_type``
may be any float, ``inf`` (max of ``|g|``), ``-inf`` (min) or 0 (count of non-zeros).  JAX arrays
are immutable: the trailing underscore keeps torch's names, and the clipped tree is returned.
``None`` leaves (parameters without a gradient) are skipped, as torch skips them.

Differences from optax: ``optax.clip_by_global_norm`` scales by ``max_norm / N`` only when
:math:`N > \text{max\_norm}` (no ``1e-6``, no multiplication otherwise) and knows only the
2-norm; a float64 nanoGPT run with it ends ~2e-6 from torch's.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

NONFINITE = (
    "The total norm of order {} for gradients from `parameters` is non-finite, so it cannot be "
    "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
    "`error_if_nonfinite=False`"
)


def _vector_norm(x: jax.Array, p: float) -> jax.Array:
    """``torch.linalg.vector_norm(x, p)`` of one array (all its elements)."""
    a = jnp.abs(x)
    if p == math.inf:
        return jnp.max(a) if a.size else jnp.zeros((), a.dtype)
    if p == -math.inf:
        return jnp.min(a) if a.size else jnp.full((), jnp.inf, a.dtype)
    if p == 0:
        return jnp.sum(a != 0).astype(a.dtype)
    if p == 1:
        return jnp.sum(a)
    if p == 2:
        return jnp.sqrt(jnp.sum(a * a))
    return jnp.sum(a**p) ** (1.0 / p)


def _check_norm_type(norm_type: Any) -> float:
    try:
        return float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"norm_type must be a number, got {norm_type!r}") from None


def _raise_nonfinite(norm_type: float, total: jax.Array) -> None:
    if not bool(jnp.isfinite(total)):
        raise RuntimeError(NONFINITE.format(norm_type))


def get_total_norm(
    grads: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach: Any = None
) -> jax.Array:
    """``torch.nn.utils.get_total_norm``: the ``norm_type``-norm of the leaves' norms (0 for no
    leaves).  With ``error_if_nonfinite``, a NaN or infinite norm raises torch's
    ``RuntimeError`` (under ``jit``: when the program runs).  ``foreach`` is ignored."""
    del foreach
    p = _check_norm_type(norm_type)
    leaves = [jnp.asarray(g) for g in jax.tree.leaves(grads)]
    if not leaves:
        return jnp.zeros(())
    norms = [_vector_norm(g, p) for g in leaves]
    dtype = jnp.result_type(*norms)
    total = _vector_norm(jnp.stack([n.astype(dtype) for n in norms]), p)
    if error_if_nonfinite:
        if isinstance(total, jax.core.Tracer):
            jax.debug.callback(_raise_nonfinite, p, total)
        else:
            _raise_nonfinite(p, total)
    return total


def clip_grads_with_norm_(grads: Any, max_norm: float, total_norm: Any, foreach: Any = None) -> Any:
    """``torch.nn.utils.clip_grads_with_norm_``: every leaf times
    ``min(1, max_norm / (total_norm + 1e-6))`` (returned; ``foreach`` is ignored)."""
    del foreach
    total = jnp.asarray(total_norm)
    coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
    return jax.tree.map(lambda g: g * coef.astype(jnp.result_type(g)), grads)


def clip_grad_norm_(
    grads: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: Any = None,
) -> tuple[Any, jax.Array]:
    """``torch.nn.utils.clip_grad_norm_``: ``(clipped grads, total norm)``; the norm is the
    one before clipping, as torch returns it."""
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    return clip_grads_with_norm_(grads, max_norm, total, foreach), total


def clip_grad_value_(grads: Any, clip_value: float, foreach: Any = None) -> Any:
    """``torch.nn.utils.clip_grad_value_``: every entry clamped to ``[-clip_value,
    clip_value]`` (returned; ``foreach`` is ignored)."""
    del foreach
    c = float(clip_value)
    return jax.tree.map(lambda g: jnp.clip(g, -c, c), grads)


class ClipGradNormState(NamedTuple):
    """``total_norm``: the norm of the last gradients seen (before clipping), for logging."""

    total_norm: jax.Array


def clip_grad_norm(max_norm: float, norm_type: float = 2.0) -> optax.GradientTransformation:
    """:func:`clip_grad_norm_` as an optax transform (put it before a torch-exact optimizer in
    ``optax.chain``); the state keeps the last total norm (``state.total_norm``)."""
    p = _check_norm_type(norm_type)

    def init_fn(params):
        del params
        return ClipGradNormState(jnp.zeros(()))

    def update_fn(updates, state, params=None):
        del params
        clipped, total = clip_grad_norm_(updates, max_norm, p)
        return clipped, ClipGradNormState(jnp.asarray(total, state.total_norm.dtype))

    return optax.GradientTransformation(init_fn, update_fn)


def clip_grad_value(clip_value: float) -> optax.GradientTransformation:
    """:func:`clip_grad_value_` as an optax transform."""

    def update_fn(updates, state, params=None):
        del params
        return clip_grad_value_(updates, clip_value), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
