"""Torch's ASGD (averaged SGD)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check_flags, check_lr, check_weight_decay
from ._common import (
    Hyperparam,
    cast,
    compute_dtype,
    float32_array,
    float32_round,
    is_zero,
    lr_value,
    map_leaves,
    need_params,
    scalar_dtype,
    signed_grad,
    step_to,
    tree_zeros_like,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words


class ASGDState(NamedTuple):
    """``eta`` and ``mu`` are float32 scalars, as torch keeps them; ``ax`` is the average."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    eta: jax.Array
    mu: jax.Array
    ax: Any


def asgd(
    lr: Hyperparam = 1e-2,
    lambd: Hyperparam = 1e-4,
    alpha: Hyperparam = 0.75,
    t0: Hyperparam = 1e6,
    weight_decay: Hyperparam = 0.0,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> optax.GradientTransformation:
    r"""ASGD exactly as ``torch.optim.ASGD``.

    .. math::
        \theta_t &= \theta_{t-1}(1 - \lambda \eta_t) - \eta_t g_t, \qquad
        \bar\theta_t = \begin{cases} \theta_t & \mu_t = 1 \\
        \bar\theta_{t-1} + \mu_t(\theta_t - \bar\theta_{t-1}) & \text{otherwise} \end{cases} \\
        \eta_{t+1} &= \frac{\eta}{(1 + \lambda \eta t)^\alpha}, \qquad
        \mu_{t+1} = \frac{1}{\max(1, t - t_0)}

    with :math:`\eta_1` = ``lr`` and :math:`\mu_1 = 1`.  The average :math:`\bar\theta` lives in
    the state (``ax``); the parameters follow :math:`\theta`, as in torch.  ``eta`` and ``mu``
    are stored in float32, as torch stores them.  optax has no namesake.
    """
    check_lr(lr)
    check_weight_decay(weight_decay)
    check_flags(foreach, None, capturable, differentiable)
    decay = not is_zero(weight_decay)

    def init_fn(params):
        eta0 = value_at(lr, zero_count())
        return ASGDState(
            zero_count(),
            jnp.asarray(eta0, jnp.float32),
            jnp.ones((), jnp.float32),
            tree_zeros_like(params),
        )

    def update_fn(grads, state, params=None):
        need_params("asgd", params)
        count = state.count
        lr_t = lr_value(lr, count)  # a float32 array: torch's float32 tensor lr
        lambd_t, alpha_t, t0_t, wd_t = (
            value_at(h, count) for h in (lambd, alpha, t0, weight_decay)
        )
        eta = state.eta.astype(scalar_dtype())
        shrink = 1 - lambd_t * eta
        mu = state.mu

        def leaf(g, p, ax):
            dtype = compute_dtype(g)
            g = signed_grad(g, p, wd_t, decay, maximize, dtype)
            p = cast(p, dtype)
            p_new = p * cast(shrink, dtype) + cast(-eta, dtype) * g
            ax_c = cast(ax, dtype)
            ax_new = jnp.where(mu == 1, p_new, ax_c + (p_new - ax_c) * cast(mu, dtype))
            return step_to(p_new, p).astype(g.dtype), ax_new.astype(ax.dtype)

        updates, ax = map_leaves(leaf, grads, params, state.ax)
        t = (count + 1).astype(scalar_dtype())
        if float32_array(lr_t):
            # torch's float32 tensor lr: eta in float32 arithmetic, each Python operand and
            # each result rounded to float32 (held in double between roundings, so that XLA
            # cannot contract a multiply-add or use its less exact float32 pow)
            lr32 = float32_round(lr_t)
            base = float32_round(1 + float32_round(
                float32_round(float32_round(lambd_t) * lr32) * float32_round(t)
            ))  # fmt: skip
            new_eta = float32_round(lr32 / float32_round(base ** float32_round(alpha_t)))
        else:
            new_eta = lr_t / ((1 + lambd_t * lr_t * t) ** alpha_t)
        new_mu = 1 / jnp.maximum(1.0, t - t0_t)
        return updates, ASGDState(
            count + 1, jnp.asarray(new_eta, jnp.float32), jnp.asarray(new_mu, jnp.float32), ax
        )

    return optax.GradientTransformation(init_fn, update_fn)


ASGD = TorchSpec(
    name="ASGD",
    factory=asgd,
    keys=words("lr lambd alpha t0 weight_decay foreach maximize differentiable capturable"),
)
