r"""torch.amp's dynamic loss scaling as pure functions and an optax wrapper.

With scale :math:`s`, the loss is multiplied by :math:`s` before differentiation; the
gradients are then multiplied by :math:`s^{-1}` (computed in double and rounded to float32, as
torch), and a step whose scaled gradients hold an inf or NaN is skipped.  After each step:

.. math::
    \text{inf/NaN found: } s \leftarrow s\,b,\ k \leftarrow 0; \qquad
    \text{else } k \leftarrow k + 1, \text{ and at } k = K:\ s \leftarrow s\,g \text{ (if finite)},
    \ k \leftarrow 0

(:math:`b` the backoff factor, :math:`g` the growth factor, :math:`K` the growth interval;
:math:`s` float32, :math:`k` int32: torch's ``_amp_update_scale_``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..transforms._common import scalar_dtype


def check_factors(growth_factor: float, backoff_factor: float, growth_interval: int) -> None:
    """torch's checks (its AssertionErrors), and a positive integer interval."""
    if growth_factor <= 1.0:
        raise AssertionError("The growth factor must be > 1.0.")
    if backoff_factor >= 1.0:
        raise AssertionError("The backoff factor must be < 1.0.")
    if isinstance(growth_interval, bool) or not isinstance(growth_interval, int):
        raise TypeError(f"growth_interval must be an int, got {growth_interval!r}")
    if growth_interval <= 0:
        raise ValueError(f"growth_interval must be a positive integer, got {growth_interval}")


def unscale(grads: Any, scale: jax.Array) -> tuple[Any, jax.Array]:
    """``(grads / scale, found_inf)``: each gradient times the float32 reciprocal of ``scale``
    (torch's ``inv_scale``: the reciprocal in double, rounded to float32), and whether any
    scaled gradient held an inf or NaN (a float32 0/1, as torch's ``found_inf``)."""
    leaves, treedef = jax.tree.flatten(grads)
    for g in leaves:
        if jnp.asarray(g).dtype == jnp.float16:
            raise ValueError("Attempting to unscale FP16 gradients.")
    inv = (1 / jnp.asarray(scale, scalar_dtype())).astype(jnp.float32)
    found = jnp.zeros((), bool)
    out = []
    for g in leaves:
        found = found | ~jnp.all(jnp.isfinite(g))
        out.append((g * inv.astype(jnp.result_type(g, jnp.float32))).astype(g.dtype))
    return treedef.unflatten(out), found.astype(jnp.float32)


def update_scale(
    scale: jax.Array,
    growth_tracker: jax.Array,
    found_inf: jax.Array,
    growth_factor: float,
    backoff_factor: float,
    growth_interval: int,
) -> tuple[jax.Array, jax.Array]:
    """torch's ``_amp_update_scale_``: the new ``(scale, growth_tracker)``."""
    dtype = scalar_dtype()  # torch multiplies the float32 scale by a double
    wide = jnp.asarray(scale, dtype)
    backed_off = (wide * backoff_factor).astype(jnp.float32)
    grown = (wide * growth_factor).astype(jnp.float32)
    successful = growth_tracker + 1
    grow = successful == growth_interval
    found = found_inf > 0
    kept = jnp.where(grow & jnp.isfinite(grown), grown, scale)
    new_scale = jnp.where(found, backed_off, kept).astype(jnp.float32)
    new_tracker = jnp.where(found | grow, 0, successful).astype(jnp.int32)
    return new_scale, new_tracker


class LossScaleState(NamedTuple):
    """The loss scale to multiply the next loss by, torch's growth tracker, the inner state."""

    scale: jax.Array
    growth_tracker: jax.Array
    inner: Any


def loss_scaling(
    inner: optax.GradientTransformation,
    init_scale: float = 2.0**16,
    growth_factor: float = 2.0,
    backoff_factor: float = 0.5,
    growth_interval: int = 2000,
) -> optax.GradientTransformationExtraArgs:
    """``inner`` fed with gradients of a loss scaled by ``state.scale``: ``update`` unscales
    them, skips the step (zero updates, ``inner``'s state kept) when any is inf or NaN, and
    updates the scale with torch's rule -- ``GradScaler``'s ``unscale_`` / ``step`` /
    ``update`` in one jit-friendly transform.

    Differences from optax: ``optax.apply_if_finite`` checks the unscaled updates and counts
    failures, without a loss scale; ``jmp``'s dynamic loss scale grows after ``period``
    steps but does not reset its counter as torch does on a backoff.
    """
    check_factors(growth_factor, backoff_factor, growth_interval)
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return LossScaleState(
            jnp.asarray(init_scale, jnp.float32), jnp.zeros((), jnp.int32), inner.init(params)
        )

    def update_fn(grads, state, params=None, **extra_args):
        unscaled, found = unscale(grads, state.scale)
        updates, new_inner = inner.update(unscaled, state.inner, params, **extra_args)
        skip = found > 0
        updates = jax.tree.map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), updates)
        new_inner = jax.tree.map(lambda n, o: jnp.where(skip, o, n), new_inner, state.inner)
        scale, tracker = update_scale(
            state.scale, state.growth_tracker, found, growth_factor, backoff_factor,
            growth_interval,
        )  # fmt: skip
        return updates, LossScaleState(scale, tracker, new_inner)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
