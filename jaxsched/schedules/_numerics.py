"""Numerical building blocks shared by the closed-form schedules.

Torch computes learning rates in Python floats (float64), mostly by repeated multiplication.
The schedules here compute closed forms in JAX's default float type (float32, or float64 under
``jax_enable_x64``) and must stay within 1e-6 (float32) / 1e-12 (float64) relative of torch over
thousands of epochs.  Three naive formulations miss that bar, so they are replaced:

* ``gamma ** n`` in float32 rounds ``gamma`` first; the error grows as ``n * 2**-24`` (6e-5 after
  1000 epochs).  :func:`int_pow` evaluates ``exp(n log|gamma|)`` with ``log|gamma|`` split into a
  12-bit head (so that ``n * head`` is exact for ``n < 4096``) and a small tail.
* ``(1 + cos(pi x)) / 2`` loses all relative accuracy near a trough (catastrophic cancellation).
  :func:`sin_sq_half_pi` evaluates the equivalent ``sin(pi d / 2)**2`` from the distance ``d`` to
  the trough, which is exact in integers.
* XLA rewrites division by a constant as multiplication by its reciprocal (1 ulp off), so a
  fraction that should be exactly 0 or 1 at an endpoint is made exact with ``jnp.where``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def float_dtype() -> np.dtype:
    """JAX's default floating dtype at trace time (float64 only under ``jax_enable_x64``)."""
    return jnp.result_type(float)


def int_dtype() -> np.dtype:
    return jnp.result_type(int)


def as_count(count) -> jax.Array:
    """Return ``count`` as an integer array (floats are floored)."""
    count = jnp.asarray(count)
    if not jnp.issubdtype(count.dtype, jnp.integer):
        count = jnp.floor(count).astype(int_dtype())
    return count


def as_epoch(value: jax.Array) -> jax.Array:
    """An epoch or cycle number handed to a user's function, in the run's default width: an
    optax transform counts in int32, and ``e / 3`` on an int32 array is float32 arithmetic even
    under x64, where torch's Python int epoch gives float64."""
    dtype = int_dtype() if jnp.issubdtype(value.dtype, jnp.integer) else float_dtype()
    return value.astype(dtype)


def epoch_of(count, steps_per_epoch: int) -> jax.Array:
    """The epoch index (torch's ``last_epoch``) reached after ``count`` optimizer steps.

    Negative counts are treated as 0 (torch's epochs start at 0 after construction).
    """
    count = jnp.maximum(as_count(count), 0)
    if steps_per_epoch == 1:
        return count
    return jnp.floor_divide(count, jnp.asarray(steps_per_epoch, count.dtype))


def _split_head(x: float, bits: int = 12) -> tuple[float, float]:
    """Split ``x`` into ``head + tail`` where ``head`` has at most ``bits`` significant bits."""
    if x == 0.0:
        return 0.0, 0.0
    mantissa, exponent = math.frexp(x)
    head = math.ldexp(round(math.ldexp(mantissa, bits)), exponent - bits)
    return head, x - head


def exp_times(log_base: float, n: jax.Array) -> jax.Array:
    """``exp(n * log_base)`` for an integer array ``n``, accurate to a few ulp in float32 too."""
    dtype = float_dtype()
    nf = n.astype(dtype)
    if dtype == jnp.float64:
        return jnp.exp(nf * log_base)
    head, tail = _split_head(log_base)
    # ``nf * head`` is exact while n < 2**12; the tail carries the remaining bits of log_base.
    # |tail| < 2**-12 |head|, so the tail's exponent only exceeds 1 where exp(nf * head) has
    # already under/overflowed; clipping it there avoids 0 * inf = NaN.
    tail_part = jnp.clip(nf * np.float32(tail), -1.0, 1.0)
    return jnp.exp(nf * np.float32(head)) * jnp.exp(tail_part)


def int_pow(base: float, n: jax.Array) -> jax.Array:
    """``base ** n`` for a Python float ``base`` and a non-negative integer array ``n``.

    Negative bases alternate in sign (torch's repeated multiplication by a negative gamma does
    the same); ``0 ** 0 == 1``.
    """
    dtype = float_dtype()
    if base == 0.0:
        return jnp.where(n == 0, 1.0, 0.0).astype(dtype)
    magnitude = exp_times(math.log(abs(base)), n)
    if base < 0.0:
        magnitude = jnp.where(n % 2 == 1, -magnitude, magnitude)
    return magnitude


def sin_sq_half_pi(q: jax.Array) -> jax.Array:
    """``sin(pi q / 2) ** 2`` = ``(1 + cos(pi (1 - q))) / 2``, accurate relative to its value."""
    s = jnp.sin(q * (math.pi / 2))
    return s * s


def fraction(num: jax.Array, den: float) -> jax.Array:
    """``num / den`` in the float dtype, exactly 0 where ``num == 0`` and 1 where ``num == den``."""
    dtype = float_dtype()
    numf = num.astype(dtype) if jnp.issubdtype(num.dtype, jnp.integer) else num
    out = numf / jnp.asarray(den, dtype)
    return jnp.where(num == den, jnp.asarray(1.0, dtype), out)


def blend(a: float, weight_a: jax.Array, b: float, weight_b: jax.Array) -> jax.Array:
    """``a * weight_a + b * weight_b`` where the two weights sum to 1.

    Interpolating as ``b + (a - b) * weight_a`` cancels catastrophically next to ``a`` when
    ``|a| << |b|`` (a warm-up from 0.01 to 1 loses six digits in float32); with both weights
    computed directly from exact distances each term keeps its relative accuracy.
    """
    dtype = float_dtype()
    return jnp.asarray(a, dtype) * weight_a.astype(dtype) + jnp.asarray(b, dtype) * weight_b.astype(
        dtype
    )


def scale(base_lr: float, factor: jax.Array) -> jax.Array:
    """``base_lr * factor`` as a scalar of the float dtype."""
    return jnp.asarray(base_lr, float_dtype()) * factor.astype(float_dtype())
