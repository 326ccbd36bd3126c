"""Cosine annealing: CosineAnnealingLR and CosineAnnealingWarmRestarts."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from .._validation import as_int, as_real, check_base_lr, check_steps_per_epoch
from ._numerics import blend, epoch_of, float_dtype, fraction, sin_sq_half_pi


def _anneal(base_lr: float, eta_min: float, to_trough, to_peak) -> jnp.ndarray:
    """``base_lr * w + eta_min * (1 - w)`` with ``w = (1 + cos(pi t)) / 2``, given the fractions
    of the half period left to the trough and to the peak (they sum to 1)."""
    return blend(base_lr, sin_sq_half_pi(to_trough), eta_min, sin_sq_half_pi(to_peak))


def cosine_annealing_lr(
    base_lr: float, T_max: float, eta_min: float = 0.0, *, steps_per_epoch: int = 1
) -> optax.Schedule:
    r"""Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` epochs (torch
    ``CosineAnnealingLR``).

    .. math:: \eta_e = \eta_{min} + (\eta_0 - \eta_{min}) \frac{1 + \cos(\pi e / T_{max})}{2}

    As in torch the curve is periodic: it does not stop at ``T_max`` but rises back to
    ``base_lr`` at ``2 T_max``, and so on.  The weight is evaluated as
    :math:`\sin^2(\pi d / 2T_{max})` from the integer distance ``d`` to the nearest trough, so the
    value is exactly ``eta_min`` at every trough and keeps its relative accuracy next to it.

    Differences from PyTorch: ``T_max`` must be positive (torch fails at the first step with
    ``ZeroDivisionError`` for 0 and silently accepts negative values).  Torch computes the curve
    recursively; the two agree to ~1e-13 relative over 1000 epochs.
    Differences from optax: ``optax.cosine_decay_schedule`` clamps at ``decay_steps``.
    """
    b = check_base_lr("base_lr", base_lr)
    t_max = as_real("T_max", T_max)
    if t_max <= 0:
        raise ValueError(f"Expected positive T_max, but got T_max={T_max!r}")
    eta = as_real("eta_min", eta_min)
    n = check_steps_per_epoch(steps_per_epoch)
    integral = t_max == int(t_max)

    def schedule(count):
        e = epoch_of(count, n)
        if integral and 2 * t_max <= np.iinfo(e.dtype).max:  # exact for every count
            r = e % (2 * int(t_max))
            d = jnp.abs(int(t_max) - r)
        else:
            ef = e.astype(float_dtype())
            r = ef - 2 * t_max * jnp.floor(ef / (2 * t_max))
            d = jnp.abs(t_max - r)
        return _anneal(b, eta, fraction(d, t_max), fraction(t_max - d, t_max))

    return schedule


def _restart_tables(t_0: int, t_mult: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Epochs at which each cycle starts (``starts[k]``) and ends (``ends[k]``), for every cycle
    that starts at or below ``limit``."""
    starts, ends = [0], [t_0]
    while ends[-1] <= limit:
        starts.append(ends[-1])
        ends.append(ends[-1] + t_0 * t_mult ** (len(starts) - 1))
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.float64)


def cosine_annealing_warm_restarts(
    base_lr: float,
    T_0: int,
    T_mult: int = 1,
    eta_min: float = 0.0,
    *,
    steps_per_epoch: int = 1,
) -> optax.Schedule:
    r"""Cosine annealing with warm restarts (SGDR; torch ``CosineAnnealingWarmRestarts``).

    Cycle ``k`` lasts :math:`T_k = T_0 T_{mult}^k` epochs; within it, after :math:`t` epochs,

    .. math:: \eta = \eta_{min} + (\eta_0 - \eta_{min}) \frac{1 + \cos(\pi t / T_k)}{2}

    This reproduces torch's iterated ``step()`` (``T_cur``/``T_i`` bookkeeping).  Cycle starts
    are tabulated in exact integers, so restarts never land one epoch off, unlike torch's
    ``step(epoch)`` path, whose floating-point logarithm misplaces some restarts (e.g.
    ``T_0=1, T_mult=3`` at epoch 121).
    Differences from optax: ``optax.sgdr_schedule`` needs the cycles listed explicitly.
    """
    b = check_base_lr("base_lr", base_lr)
    t_0 = as_int("T_0", T_0, minimum=1)
    t_mult = as_int("T_mult", T_mult, minimum=1)
    if isinstance(eta_min, str):
        raise ValueError(f"Expected float or int eta_min, but got {eta_min!r} of type str")
    eta = as_real("eta_min", eta_min)
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        e = epoch_of(count, n)
        dtype = float_dtype()
        if t_mult == 1:
            done = e % t_0
            return _anneal(b, eta, fraction(t_0 - done, t_0), fraction(done, t_0))
        starts, ends = _restart_tables(t_0, t_mult, int(np.iinfo(e.dtype).max))
        cycle = jnp.sum(e[..., None] >= starts[1:].astype(e.dtype), axis=-1)
        end = jnp.asarray(ends, dtype)[cycle]
        length = end - jnp.asarray(starts.astype(np.float64), dtype)[cycle]
        done = e.astype(dtype) - jnp.asarray(starts.astype(np.float64), dtype)[cycle]
        left = jnp.where(done == 0, jnp.asarray(1.0, dtype), (length - done) / length)
        return _anneal(b, eta, left, done / length)

    return schedule
