r"""torch's strong-Wolfe line search for LBFGS, as one compiled loop.

The line search looks along a direction :math:`d` from :math:`x` for a step :math:`t` with

.. math::
    f(x + t d) \le f(x) + c_1 t\, g^\top d \quad\text{(sufficient decrease)}, \qquad
    |g(x + t d)^\top d| \le -c_2\, g^\top d \quad\text{(curvature)},

first growing :math:`t` until an interval brackets such a point (each new trial by cubic
interpolation, bounded to :math:`[t + 0.01 (t - t_{prev}),\ 10 t]`), then shrinking the bracket
("zoom") by cubic interpolation, kept at least a tenth of the bracket from its ends when the
previous trial made too little progress.  The rules, the order of the tests, the evaluation
budget (``max_ls`` evaluations after the first) and what is returned when the budget runs out
are torch 2.13's (``torch/optim/lbfgs.py``, after Mark Schmidt's minFunc and torch7's
``lswolfe.lua``); both phases are ``lax.while_loop``\ s, so the search never leaves the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from . import _tree_vectors as tv
from ._common import python_max, python_min


def cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None) -> jax.Array:
    r"""The minimiser of the cubic through :math:`(x_1, f_1)`, :math:`(x_2, f_2)` with slopes
    :math:`g_1, g_2`, clamped to ``bounds`` (default: the interval between the points); the
    interval's midpoint when the cubic has no real minimiser.

    .. math::
        d_1 = g_1 + g_2 - 3\frac{f_1 - f_2}{x_1 - x_2},\quad d_2 = \sqrt{d_1^2 - g_1 g_2},\quad
        x^* = x_2 - (x_2 - x_1)\frac{g_2 + d_2 - d_1}{g_2 - g_1 + 2 d_2}\ (x_1 \le x_2)
    """
    if bounds is None:
        ordered = x1 <= x2
        lower, upper = jnp.where(ordered, x1, x2), jnp.where(ordered, x2, x1)
    else:
        lower, upper = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    d2 = jnp.sqrt(jnp.where(d2_square >= 0, d2_square, 0))
    forward = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    backward = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    minimum = jnp.where(x1 <= x2, forward, backward)
    clamped = python_min(python_max(minimum, lower), upper)
    return jnp.where(d2_square >= 0, clamped, (lower + upper) / 2.0)


def strong_wolfe(
    evaluate: Callable[[jax.Array], tuple[jax.Array, Any]],
    d: Any,
    t: jax.Array,
    f: jax.Array,
    g: Any,
    gtd: jax.Array,
    max_ls: jax.Array,
    tolerance_change: jax.Array,
    c1: float = 1e-4,
    c2: float = 0.9,
) -> tuple[jax.Array, Any, jax.Array, jax.Array]:
    """Search along ``d`` from the point where the loss is ``f``, the gradient ``g`` and the
    slope ``gtd``, starting with step ``t``; ``evaluate(t)`` gives the loss and gradient at
    ``x + t d``.  Returns the loss, gradient and step chosen and the number of evaluations."""
    dtype = gtd.dtype
    d_norm = tv.abs_max(d)
    f_new, g_new = evaluate(t)
    gtd_new = tv.dot(g_new, d)

    # -- bracketing: outcome 0 = keep growing, 1 = a bracket [t_prev, t], 2 = t satisfies both
    def classify(ls_iter, f_new, f_prev, gtd_new, t):
        armijo_fails = (f_new > f + c1 * t * gtd) | ((ls_iter > 1) & (f_new >= f_prev))
        curvature = jnp.abs(gtd_new) <= -c2 * gtd
        outcome = jnp.where(armijo_fails, 1, jnp.where(curvature, 2, jnp.where(gtd_new >= 0, 1, 0)))
        return jnp.where(ls_iter < max_ls, outcome, 0)  # torch tests only inside its budget

    zero = jnp.zeros((), dtype)
    start = dict(
        ls_iter=jnp.zeros((), jnp.int32), t=t, t_prev=zero, f_prev=f, g_prev=g, gtd_prev=gtd,
        f_new=f_new, g_new=g_new, gtd_new=gtd_new,
    )  # fmt: skip
    start["outcome"] = classify(start["ls_iter"], f_new, f, gtd_new, t)

    def grow(c):
        t, t_prev = c["t"], c["t_prev"]
        t_next = cubic_minimum(
            t_prev, c["f_prev"], c["gtd_prev"], t, c["f_new"], c["gtd_new"],
            bounds=(t + 0.01 * (t - t_prev), t * 10),
        )  # fmt: skip
        f_next, g_next = evaluate(t_next)
        gtd_next = tv.dot(g_next, d)
        ls_iter = c["ls_iter"] + 1
        return dict(
            ls_iter=ls_iter, t=t_next, t_prev=t, f_prev=c["f_new"], g_prev=c["g_new"],
            gtd_prev=c["gtd_new"], f_new=f_next, g_new=g_next, gtd_new=gtd_next,
            outcome=classify(ls_iter, f_next, c["f_new"], gtd_next, t_next),
        )  # fmt: skip

    c = jax.lax.while_loop(lambda c: (c["outcome"] == 0) & (c["ls_iter"] < max_ls), grow, start)
    ls_iter, outcome = c["ls_iter"], c["outcome"]
    # Out of budget without a bracket: torch takes [0, t] with the starting point as one end.
    exhausted = outcome == 0
    done = outcome == 2
    stack = lambda a, b: jnp.stack([a, b])  # noqa: E731
    bracket = jnp.where(
        exhausted, stack(zero, c["t"]),
        jnp.where(done, stack(c["t"], c["t"]), stack(c["t_prev"], c["t"])),
    )  # fmt: skip
    bracket_f = jnp.where(
        exhausted, stack(f, c["f_new"]),
        jnp.where(done, stack(c["f_new"], c["f_new"]), stack(c["f_prev"], c["f_new"])),
    )  # fmt: skip
    first_g = jax.tree.map(
        lambda a, b, n: jnp.where(exhausted, a, jnp.where(done, n, b)), g, c["g_prev"], c["g_new"]
    )
    bracket_g = jax.tree.map(stack, first_g, c["g_new"])
    bracket_gtd = jnp.where(exhausted, stack(gtd, c["gtd_new"]), stack(c["gtd_prev"], c["gtd_new"]))

    def low_high(bracket_f):
        low = jnp.where(bracket_f[0] <= bracket_f[1], 0, 1)
        return low, 1 - low

    low, high = low_high(bracket_f)

    # -- zoom: shrink the bracket until a point satisfies both conditions
    def zoom_continues(z):
        b = z["bracket"]
        small = jnp.abs(b[1] - b[0]) * d_norm < tolerance_change
        return ~z["done"] & (z["ls_iter"] < max_ls) & ~small

    def zoom(z):
        b, bf, bgtd, low, high = z["bracket"], z["bracket_f"], z["bracket_gtd"], z["low"], z["high"]
        t = cubic_minimum(b[0], bf[0], bgtd[0], b[1], bf[1], bgtd[1])
        b_max, b_min = python_max(b[0], b[1]), python_min(b[0], b[1])
        eps = 0.1 * (b_max - b_min)
        near_end = python_min(b_max - t, t - b_min) < eps
        move = near_end & (z["insuf_progress"] | (t >= b_max) | (t <= b_min))
        moved = jnp.where(jnp.abs(t - b_max) < jnp.abs(t - b_min), b_max - eps, b_min + eps)
        t = jnp.where(move, moved, t)
        insuf_progress = near_end & ~move
        f_new, g_new = evaluate(t)
        gtd_new = tv.dot(g_new, d)
        ls_iter = z["ls_iter"] + 1

        bracket_g = z["bracket_g"]
        replace_high = (f_new > f + c1 * t * gtd) | (f_new >= bf[low])
        wolfe = ~replace_high & (jnp.abs(gtd_new) <= -c2 * gtd)
        # the old high end becomes the low one when the slope points past the low end
        swap = ~replace_high & ~wolfe & (gtd_new * (b[high] - b[low]) >= 0)
        b = jnp.where(swap, b.at[high].set(b[low]), b)
        bf = jnp.where(swap, bf.at[high].set(bf[low]), bf)
        bgtd = jnp.where(swap, bgtd.at[high].set(bgtd[low]), bgtd)
        bracket_g = jax.tree.map(lambda s: jnp.where(swap, s.at[high].set(s[low]), s), bracket_g)
        slot = jnp.where(replace_high, high, low)  # where the new point goes
        b, bf, bgtd = b.at[slot].set(t), bf.at[slot].set(f_new), bgtd.at[slot].set(gtd_new)
        bracket_g = tv.set_row(bracket_g, slot, g_new)
        new_low, new_high = low_high(bf)
        return dict(
            bracket=b, bracket_f=bf, bracket_g=bracket_g, bracket_gtd=bgtd,
            low=jnp.where(replace_high, new_low, low), high=jnp.where(replace_high, new_high, high),
            insuf_progress=insuf_progress, done=wolfe, ls_iter=ls_iter, t=t,
        )  # fmt: skip

    z = dict(
        bracket=bracket, bracket_f=bracket_f, bracket_g=bracket_g, bracket_gtd=bracket_gtd,
        low=low, high=high, insuf_progress=jnp.zeros((), bool), done=done, ls_iter=ls_iter,
        t=t,
    )  # fmt: skip
    z = jax.lax.while_loop(zoom_continues, zoom, z)
    low = z["low"]
    evaluations = z["ls_iter"] + 1
    return z["bracket_f"][low], tv.row(z["bracket_g"], low), z["bracket"][low], evaluations
