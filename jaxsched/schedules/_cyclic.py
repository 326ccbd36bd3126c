"""Cyclical learning rates and momenta (torch ``CyclicLR``)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from .._validation import as_real, check_base_lr, check_scalar_fn, check_steps_per_epoch
from ._numerics import as_epoch, epoch_of, float_dtype, int_pow, scale

_MODES = ("triangular", "triangular2", "exp_range")


def _cycle_weight(
    step_size_up: float,
    step_size_down: float | None,
    mode: str,
    gamma: float,
    scale_fn: Callable[[jax.Array], jax.Array] | None,
    scale_mode: str,
) -> Callable[[jax.Array], jax.Array]:
    """Validate CyclicLR's shape arguments; return ``w(e) = triangle(e) * scale(e)`` in [0, 1]."""
    up = as_real("step_size_up", step_size_up)
    if up <= 0:
        raise ValueError(f"Expected positive step_size_up, but got step_size_up={step_size_up!r}")
    down = up if step_size_down is None else as_real("step_size_down", step_size_down)
    if down < 0:
        raise ValueError(
            f"Expected non-negative step_size_down, but got step_size_down={step_size_down!r}"
        )
    g = as_real("gamma", gamma)
    if scale_fn is None:
        if mode not in _MODES:
            raise ValueError(f"mode is invalid and scale_fn is None: mode={mode!r}")
        # torch forces the argument of its built-in policies.
        scale_mode = "iterations" if mode == "exp_range" else "cycle"
    else:
        scale_fn = check_scalar_fn("scale_fn", scale_fn, "the cycle or iteration number")
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"scale_mode must be 'cycle' or 'iterations', but got {scale_mode!r}")
    total = up + down
    integral = up == int(up) and down == int(down)

    def policy(cycle, e):
        if scale_fn is not None:
            arg = cycle if scale_mode == "cycle" else e
            return jnp.asarray(scale_fn(as_epoch(arg)), float_dtype())
        if mode == "triangular":
            return jnp.ones((), float_dtype())
        if mode == "triangular2":
            return jnp.ldexp(jnp.ones((), float_dtype()), -(cycle - 1).astype(jnp.int32))
        return int_pow(g, e)

    def weight(e):
        dtype = float_dtype()
        if integral:  # exact for every count
            completed = e // int(total)
            pos = (e - completed * int(total)).astype(dtype)
        else:
            ef = e.astype(dtype)
            completed = jnp.floor(ef / total)
            pos = ef - completed * total
            completed = completed.astype(e.dtype)
        # Position p in the cycle: rising p/u, then falling (u + d - p)/d, both exact near 0.
        rising = pos / up
        falling = (total - pos) / (down if down > 0 else 1.0)
        tri = jnp.where(pos <= up, rising, falling)
        return tri * policy(completed + 1, e)

    return weight


def cyclic_lr(
    base_lr: float,
    max_lr: float,
    step_size_up: float = 2000,
    step_size_down: float | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[jax.Array], jax.Array] | None = None,
    scale_mode: str = "cycle",
    *,
    steps_per_epoch: int = 1,
) -> optax.Schedule:
    r"""Cyclical learning rate between ``base_lr`` and ``max_lr`` (torch ``CyclicLR``).

    With ``u = step_size_up``, ``d = step_size_down`` (default ``u``), ``c = 1 + e // (u + d)`` the
    cycle and ``p = e mod (u + d)`` the position in it:

    .. math::
        \eta_e = \eta_{base} + (\eta_{max} - \eta_{base})\, \mathrm{tri}(p)\, s(\cdot), \quad
        \mathrm{tri}(p) = \begin{cases} p/u & p \le u \\ (u + d - p)/d & p > u \end{cases}

    with ``s = 1`` (``'triangular'``), ``s(c) = 2^{-(c-1)}`` (``'triangular2'``),
    ``s(e) = gamma^e`` (``'exp_range'``, counted in iterations as torch does), or a custom
    jnp-traceable ``scale_fn`` of the cycle or the iteration (``scale_mode``).  ``count`` is
    torch's ``last_epoch``: CyclicLR is normally stepped every batch, so keep ``steps_per_epoch=1``.

    Differences from PyTorch: ``step_size_up <= 0`` raises ``ValueError`` (torch:
    ``ZeroDivisionError``); an unknown ``scale_mode`` with a custom ``scale_fn`` raises instead
    of silently meaning ``'iterations'``.
    Differences from optax: no optax builtin; ``exp_range`` is not expressible with
    ``piecewise_interpolate_schedule``.
    """
    lo = check_base_lr("base_lr", base_lr)
    hi = check_base_lr("max_lr", max_lr)
    weight = _cycle_weight(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        return jnp.asarray(lo, float_dtype()) + scale(hi - lo, weight(epoch_of(count, n)))

    return schedule


def cyclic_momentum(
    base_lr: float,
    max_lr: float,
    step_size_up: float = 2000,
    step_size_down: float | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[jax.Array], jax.Array] | None = None,
    scale_mode: str = "cycle",
    *,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
    steps_per_epoch: int = 1,
) -> optax.Schedule:
    r"""The momentum (or Adam's ``beta1``) that torch's ``CyclicLR(cycle_momentum=True)`` writes
    alongside :func:`cyclic_lr`: it moves inversely to the learning rate,

    .. math:: m_e = m_{max} - (m_{max} - m_{base})\, \mathrm{tri}(p)\, s(\cdot)

    Takes :func:`cyclic_lr`'s arguments (``base_lr``/``max_lr`` are validated but do not enter
    the momentum) plus torch's ``base_momentum`` and ``max_momentum``.
    """
    check_base_lr("base_lr", base_lr)
    check_base_lr("max_lr", max_lr)
    lo = as_real("base_momentum", base_momentum)
    hi = as_real("max_momentum", max_momentum)
    weight = _cycle_weight(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        return jnp.asarray(hi, float_dtype()) - scale(hi - lo, weight(epoch_of(count, n)))

    return schedule
