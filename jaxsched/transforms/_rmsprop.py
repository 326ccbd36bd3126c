"""Torch's RMSprop: rates from a running average of squared gradients."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check, check_eps, check_flags, check_lr, check_weight_decay
from ._common import (
    Hyperparam,
    cast,
    complement,
    compute_dtype,
    is_zero,
    map_leaves,
    need_params,
    signed_grad,
    tree_zeros_like,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words


class RMSpropState(NamedTuple):
    """``momentum_buffer`` only with a momentum; ``grad_avg`` only when ``centered`` (torch's
    order of its per-parameter state)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    square_avg: Any
    momentum_buffer: Any
    grad_avg: Any


def rmsprop(
    lr: Hyperparam = 1e-2,
    alpha: Hyperparam = 0.99,
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0.0,
    momentum: Hyperparam = 0.0,
    centered: bool = False,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    r"""RMSprop exactly as ``torch.optim.RMSprop``.

    .. math::
        v_t &= \alpha v_{t-1} + (1 - \alpha) g_t^2, \qquad
        \bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) g_t \ \text{(centered)} \\
        a_t &= \sqrt{v_t - \bar g_t^2} + \epsilon \ \text{(centered) or } \sqrt{v_t} + \epsilon \\
        b_t &= \mu b_{t-1} + g_t / a_t, \quad \theta_t = \theta_{t-1} - \eta b_t
        \quad (\text{without momentum: } \theta_t = \theta_{t-1} - \eta g_t / a_t)

    Differences from optax: ``optax.rmsprop`` defaults to ``decay=0.9`` and ``eps`` inside the
    square root, and with momentum keeps the learning rate inside the trace (torch: outside, so
    the two differ as soon as the learning rate changes).
    """
    check_lr(lr)
    check_eps(eps)
    check(momentum, lambda v: v >= 0.0, "Invalid momentum value: {}")
    check_weight_decay(weight_decay)
    check(alpha, lambda v: v >= 0.0, "Invalid alpha value: {}")
    check_flags(foreach, None, capturable, differentiable)
    decay = not is_zero(weight_decay)
    use_buffer = not is_zero(momentum)

    def init_fn(params):
        return RMSpropState(
            count=zero_count(),
            square_avg=tree_zeros_like(params),
            momentum_buffer=tree_zeros_like(params) if use_buffer else None,
            grad_avg=tree_zeros_like(params) if centered else None,
        )

    def update_fn(grads, state, params=None):
        count = state.count
        lr_t, a_t, eps_t, wd_t, mom_t = (
            value_at(h, count) for h in (lr, alpha, eps, weight_decay, momentum)
        )
        a_c = complement(alpha, count)
        if decay:
            need_params("rmsprop", params)

        def leaf(g, p, v, ga, buf):
            dtype = compute_dtype(g)
            g = signed_grad(g, p, wd_t, decay, maximize, dtype)
            v_new = cast(v, dtype) * cast(a_t, dtype) + g * g * cast(a_c, dtype)
            ga_new = None
            if centered:
                ga_new = cast(ga, dtype) + (g - cast(ga, dtype)) * cast(a_c, dtype)
                avg = jnp.sqrt(v_new - ga_new * ga_new) + cast(eps_t, dtype)
                ga_new = ga_new.astype(ga.dtype)
            else:
                avg = jnp.sqrt(v_new) + cast(eps_t, dtype)
            buf_new = None
            if use_buffer:
                buf_new = cast(buf, dtype) * cast(mom_t, dtype) + g / avg
                update = cast(-lr_t, dtype) * buf_new
                buf_new = buf_new.astype(buf.dtype)
            else:
                update = cast(-lr_t, dtype) * (g / avg)
            return update.astype(g.dtype), v_new.astype(v.dtype), ga_new, buf_new

        updates, v, ga, buf = map_leaves(
            leaf,
            grads,
            params if decay else None,
            state.square_avg,
            state.grad_avg,
            state.momentum_buffer,
        )
        return updates, RMSpropState(count + 1, v, buf, ga)

    return optax.GradientTransformation(init_fn, update_fn)


RMSPROP = TorchSpec(
    name="RMSprop",
    factory=rmsprop,
    keys=words(
        "lr momentum alpha eps centered weight_decay capturable foreach maximize differentiable"
    ),
    state_when={
        "momentum_buffer": lambda g, s: g["momentum"] > 0,
        "grad_avg": lambda g, s: g["centered"],
    },
)
