"""Piecewise and power-law decays: StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR,
PolynomialLR.

Every factory returns ``schedule(count) -> lr`` where ``count // steps_per_epoch`` is torch's
``last_epoch``; ``schedule(k)`` is ``scheduler.get_last_lr()[0]`` after ``k`` calls of
``scheduler.step()`` on a freshly built torch scheduler.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax.numpy as jnp
import numpy as np
import optax

from .._validation import as_int, as_real, check_base_lr, check_steps_per_epoch
from ._numerics import blend, epoch_of, float_dtype, fraction, int_pow, scale


def step_lr(
    base_lr: float, step_size: int, gamma: float = 0.1, *, steps_per_epoch: int = 1
) -> optax.Schedule:
    r"""Decay by ``gamma`` every ``step_size`` epochs (torch ``StepLR``).

    .. math:: \eta_e = \eta_0 \, \gamma^{\lfloor e / \text{step\_size} \rfloor}

    Args:
      base_lr: :math:`\eta_0`, the optimizer's initial learning rate.
      step_size: epochs between two decays; a positive integer.
      gamma: multiplicative factor applied at every decay (any real, as in torch).
      steps_per_epoch: optimizer steps per epoch; ``count // steps_per_epoch`` is the epoch.

    Differences from PyTorch: ``step_size`` must be a positive integer.  Torch accepts 0 (and
    fails with ``ZeroDivisionError`` at the first step), negative values (which act like their
    absolute value) and non-integral floats (whose recursive and closed forms disagree).
    Differences from optax: equals ``optax.exponential_decay(base_lr, step_size, gamma,
    staircase=True)`` up to rounding, but evaluates ``gamma ** n`` accurately in float32.
    """
    b = check_base_lr("base_lr", base_lr)
    size = as_int("step_size", step_size, minimum=1)
    g = as_real("gamma", gamma)
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        e = epoch_of(count, n)
        return scale(b, int_pow(g, e // size))

    return schedule


def multistep_lr(
    base_lr: float, milestones: Iterable[int], gamma: float = 0.1, *, steps_per_epoch: int = 1
) -> optax.Schedule:
    r"""Decay by ``gamma`` at each milestone epoch (torch ``MultiStepLR``).

    .. math:: \eta_e = \eta_0 \, \gamma^{\#\{m \in \text{milestones} : m \le e\}}

    Milestones are counted with multiplicity, so a repeated milestone decays by ``gamma**k``, as
    torch's ``Counter`` does; order does not matter; a milestone at 0 decays from the start.

    Differences from PyTorch: negative or non-integral milestones raise ``ValueError`` (torch
    accepts them; its recursive and closed forms then disagree).
    Differences from optax: like ``optax.piecewise_constant_schedule`` with duplicates merged.
    """
    b = check_base_lr("base_lr", base_lr)
    try:
        marks = sorted(as_int("milestones", m, minimum=0) for m in milestones)
    except TypeError:
        raise ValueError(
            f"Expected an iterable of integers for milestones, but got {milestones!r}"
        ) from None
    g = as_real("gamma", gamma)
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        e = epoch_of(count, n)
        limit = np.iinfo(e.dtype).max
        reachable = np.asarray([m for m in marks if m <= limit], dtype=e.dtype)
        passed = jnp.sum(e[..., None] >= reachable, axis=-1, dtype=e.dtype)
        return scale(b, int_pow(g, passed))

    return schedule


def constant_lr(
    base_lr: float,
    factor: float = 1.0 / 3,
    total_iters: int = 5,
    *,
    steps_per_epoch: int = 1,
) -> optax.Schedule:
    r"""Scale by ``factor`` for the first ``total_iters`` epochs (torch ``ConstantLR``).

    .. math:: \eta_e = \begin{cases} \eta_0 f & e < T \\ \eta_0 f \cdot (1/f) & e \ge T \end{cases}

    The value after ``total_iters`` is computed as torch does, ``(base_lr * f) * (1 / f)``, so it
    equals torch's bit for bit in float64.  With ``total_iters == 0`` torch never undoes the
    factor and neither does this schedule.

    Differences from PyTorch: ``factor == 0`` with ``total_iters > 0`` raises ``ValueError`` here
    (torch fails with ``ZeroDivisionError`` when it reaches ``total_iters``).
    """
    b = check_base_lr("base_lr", base_lr)
    f = as_real("factor", factor)
    if not 0.0 <= f <= 1.0:
        raise ValueError(
            "Constant multiplicative factor expected to be between 0 and 1, "
            f"but got factor={factor!r}"
        )
    total = as_int("total_iters", total_iters, minimum=0)
    if f == 0.0 and total > 0:
        raise ValueError(
            f"factor=0.0 cannot be undone after total_iters={total} epochs (torch divides by it)"
        )
    n = check_steps_per_epoch(steps_per_epoch)
    during = b * f
    after = during * (1.0 / f) if total > 0 else during

    def schedule(count):
        e = epoch_of(count, n)
        dtype = float_dtype()
        return jnp.where(e >= total, jnp.asarray(after, dtype), jnp.asarray(during, dtype))

    return schedule


def linear_lr(
    base_lr: float,
    start_factor: float = 1.0 / 3,
    end_factor: float = 1.0,
    total_iters: int = 5,
    *,
    steps_per_epoch: int = 1,
) -> optax.Schedule:
    r"""Move the factor linearly from ``start_factor`` to ``end_factor`` (torch ``LinearLR``).

    .. math:: \eta_e = \eta_0 \left(f_{start} \frac{T - \min(e, T)}{T}
              + f_{end} \frac{\min(e, T)}{T}\right)

    Both weights are exact fractions of integers, so ``e >= T`` gives exactly
    ``base_lr * end_factor`` and a warm-up from a tiny ``start_factor`` keeps its relative
    accuracy in float32.

    Differences from PyTorch: ``total_iters`` must be a positive integer (torch's closed form
    divides by it; its recursive form freezes at ``start_factor`` when it is 0).
    Differences from optax: ``optax.linear_schedule(base_lr * s, base_lr * e, T)``, same values.
    """
    b = check_base_lr("base_lr", base_lr)
    s = as_real("start_factor", start_factor)
    if not 0.0 < s <= 1.0:
        raise ValueError(
            "Starting multiplicative factor expected to be greater than 0 and less or equal "
            f"to 1, but got start_factor={start_factor!r}"
        )
    end = as_real("end_factor", end_factor)
    if not 0.0 <= end <= 1.0:
        raise ValueError(
            f"Ending multiplicative factor expected to be between 0 and 1, but got "
            f"end_factor={end_factor!r}"
        )
    total = as_int("total_iters", total_iters, minimum=1)
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        e = epoch_of(count, n)
        done = jnp.minimum(e, total)
        factor = blend(s, fraction(total - done, total), end, fraction(done, total))
        return scale(b, factor)

    return schedule


def exponential_lr(base_lr: float, gamma: float, *, steps_per_epoch: int = 1) -> optax.Schedule:
    r"""Decay by ``gamma`` every epoch (torch ``ExponentialLR``): :math:`\eta_e = \eta_0\gamma^e`.

    Any real ``gamma`` is accepted, as in torch (0 gives 0 from epoch 1, a negative value
    alternates the sign).
    Differences from optax: ``optax.exponential_decay(base_lr, 1, gamma)`` rounds ``gamma`` to
    float32 before raising it to the power ``e`` (about ``e`` x 6e-8 relative error); this
    schedule stays within a few ulp.
    """
    b = check_base_lr("base_lr", base_lr)
    g = as_real("gamma", gamma)
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        return scale(b, int_pow(g, epoch_of(count, n)))

    return schedule


def polynomial_lr(
    base_lr: float, total_iters: int = 5, power: float = 1.0, *, steps_per_epoch: int = 1
) -> optax.Schedule:
    r"""Polynomial decay to exactly 0 at ``total_iters`` (torch ``PolynomialLR``).

    .. math:: \eta_e = \eta_0 \left(\frac{T - \min(e, T)}{T}\right)^{p}

    Differences from PyTorch: ``total_iters`` must be positive and ``power`` non-negative (torch
    divides by ``total_iters`` in its closed form and raises ``ZeroDivisionError`` for a negative
    power at ``e == T``).
    Differences from optax: ``optax.polynomial_schedule`` computes ``1 - c/T``, which XLA turns
    into ``1 - c * (1/T)``: under x64 that is -2e-17 at ``c == T`` and the power gives NaN.
    Here the base is exactly 0 there.
    """
    b = check_base_lr("base_lr", base_lr)
    total = as_int("total_iters", total_iters, minimum=1)
    p = as_real("power", power)
    if p < 0.0:
        raise ValueError(f"Expected non-negative power, but got power={power!r}")
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        e = epoch_of(count, n)
        x = fraction(total - jnp.minimum(e, total), total)
        if p == 0.0:
            factor = jnp.ones_like(x)
        elif p == 1.0:
            factor = x
        else:
            # 0 ** p is 0 for every p > 0, even one that underflows to 0 in float32.
            factor = jnp.where(x == 0, 0.0, jnp.power(x, jnp.asarray(p, x.dtype)))
        return scale(b, factor)

    return schedule
