"""The 1cycle policy (torch ``OneCycleLR``) for the learning rate and the momentum."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from .._validation import as_real, check_base_lr, check_cycle
from ._numerics import as_count, blend, float_dtype, sin_sq_half_pi


def _phase_ends(
    total_steps: int | None,
    epochs: int | None,
    steps_per_epoch: int | None,
    pct_start: float,
    anneal_strategy: str,
    three_phase: bool,
) -> tuple[int, list[float]]:
    """Validate the shared arguments; return ``T`` and the end step of every phase (torch's
    floats, e.g. ``pct_start * T - 1``)."""
    total = check_cycle(total_steps, epochs, steps_per_epoch, pct_start, anneal_strategy)
    if three_phase:
        ends = [float(pct_start * total) - 1, float(2 * pct_start * total) - 2, float(total - 1)]
    else:
        ends = [float(pct_start * total) - 1, float(total - 1)]
    start = 0.0
    # A zero-length last phase (pct_start=1.0) is only reached at the extrapolated step T.
    for i, end in enumerate(ends[:-1]):
        if end == start:
            raise ValueError(
                f"phase {i + 1} of the cycle has zero length (it starts and ends at step {end}) "
                f"with pct_start={pct_start!r} and total_steps={total}: torch divides by its "
                "length and fails with ZeroDivisionError when it gets there"
            )
        start = end
    return total, ends


def _offset(e: jax.Array, point: float) -> jax.Array:
    """``e - point`` for an integer array ``e`` and a Python float ``point``, accurate relative to
    the (small) result: the integer part is subtracted exactly, then the fractional part."""
    whole = math.floor(point)
    return (e - whole).astype(float_dtype()) - (point - whole)


def _piecewise(
    total: int, ends: Sequence[float], values: Sequence[float], anneal_strategy: str
) -> Callable[[jax.Array], jax.Array]:
    """Anneal between ``values[i]`` and ``values[i + 1]`` over phase ``i``; torch's selection rule:
    the first phase whose end is at or after the step, else the last one."""
    starts = [0.0, *ends[:-1]]

    def schedule(count):
        e = jnp.maximum(as_count(count), 0)
        dtype = float_dtype()
        out = jnp.asarray(values[-1], dtype)
        # Walk the phases backwards so that the first matching one is applied last.
        for i in reversed(range(len(ends))):
            width = (ends[i] - starts[i]) or 1.0  # 0 only for a last phase that is never used
            done = _offset(e, starts[i]) / width  # torch's pct
            left = -_offset(e, ends[i]) / width  # 1 - pct, accurate near the phase end
            if anneal_strategy == "cos":
                done, left = sin_sq_half_pi(done), sin_sq_half_pi(left)
            value = blend(values[i], left, values[i + 1], done)
            last = i == len(ends) - 1
            out = value if last else jnp.where(e <= math.floor(ends[i]), value, out)
        # torch refuses to step past total_steps; hold the final value there instead (from
        # step T itself when the last phase is empty, where torch divides by zero).
        last = total if ends[-1] == starts[-1] else total + 1
        return jnp.where(e >= last, jnp.asarray(values[-1], dtype), out)

    return schedule


def _lr_points(max_lr: float, div_factor: float, final_div_factor: float, three_phase: bool):
    peak = check_base_lr("max_lr", max_lr)
    div = as_real("div_factor", div_factor)
    final_div = as_real("final_div_factor", final_div_factor)
    if div <= 0:
        raise ValueError(f"Expected positive div_factor, but got div_factor={div_factor!r}")
    if final_div <= 0:
        raise ValueError(
            f"Expected positive final_div_factor, but got final_div_factor={final_div_factor!r}"
        )
    initial = peak / div
    lowest = initial / final_div
    return [initial, peak, initial, lowest] if three_phase else [initial, peak, lowest]


def one_cycle_lr(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> optax.Schedule:
    r"""The 1cycle learning rate (torch ``OneCycleLR``), stepped once per batch.

    With :math:`T` = ``total_steps`` (or ``epochs * steps_per_epoch``), ``initial = max_lr /
    div_factor`` and ``min = initial / final_div_factor``, the rate anneals ``initial -> max_lr``
    over steps ``[0, pct_start*T - 1]`` then ``max_lr -> min`` until ``T - 1`` (three-phase:
    ``initial -> max -> initial`` ending at ``pct_start*T - 1`` and ``2*pct_start*T - 2``, then
    ``initial -> min`` until ``T - 1``).  Within a phase, at fraction :math:`p`,

    .. math:: \text{cos: } b + (a - b)\frac{1 + \cos \pi p}{2}, \qquad
              \text{linear: } a + (b - a)\, p

    Here ``steps_per_epoch`` keeps torch's meaning (it sizes the cycle); ``count`` is the batch.
    At ``count == T`` the value is torch's extrapolation (torch allows that one extra step); past
    it, where torch raises, the schedule holds the final value (``min``).

    Differences from PyTorch: a zero-length first phase (``pct_start * T == 1``) raises
    ``ValueError`` here; torch raises ``ZeroDivisionError`` at the first step.  With
    ``pct_start=1.0`` torch fails at step ``T``; here step ``T`` already holds the final value.
    Differences from optax: ``optax.cosine_onecycle_schedule`` puts the peak at
    ``int(pct_start*T)`` and the end at ``T`` (torch: ``pct_start*T - 1`` and ``T - 1``).
    """
    total, ends = _phase_ends(
        total_steps, epochs, steps_per_epoch, pct_start, anneal_strategy, three_phase
    )
    points = _lr_points(max_lr, div_factor, final_div_factor, three_phase)
    return _piecewise(total, ends, points, anneal_strategy)


def one_cycle_momentum(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    *,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
) -> optax.Schedule:
    r"""The momentum (or ``beta1``) that torch's ``OneCycleLR(cycle_momentum=True)`` writes: it
    moves inversely to :func:`one_cycle_lr` over the same phases, ``max_momentum ->
    base_momentum -> max_momentum`` (three-phase: ``max -> base -> max``, then constant).
    """
    total, ends = _phase_ends(
        total_steps, epochs, steps_per_epoch, pct_start, anneal_strategy, three_phase
    )
    _lr_points(max_lr, div_factor, final_div_factor, three_phase)
    lo = as_real("base_momentum", base_momentum)
    hi = as_real("max_momentum", max_momentum)
    points = [hi, lo, hi, hi] if three_phase else [hi, lo, hi]
    return _piecewise(total, ends, points, anneal_strategy)
