"""Torch's RAdam: Adam with the variance rectification term."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import (
    check_betas,
    check_eps,
    check_flags,
    check_lr,
    check_weight_decay,
    concrete,
)
from ._common import (
    Hyperparam,
    adam_moments,
    cast,
    complement,
    compute_dtype,
    is_zero,
    lr_value,
    map_leaves,
    need_params,
    one_minus_pow,
    pow_t,
    tree_zeros_like,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words


class RAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    exp_avg: Any
    exp_avg_sq: Any


def _first_rectified_step(beta2: float) -> float:
    """The first step ``t`` with torch's ``rho_t > 5`` (``rho_t`` grows with ``t``), found in
    float64 so that the switch never lands on another step because of float32 rounding."""
    rho_inf = 2 / (1 - beta2) - 1
    if rho_inf <= 5:
        return math.inf
    t = 1
    while rho_inf - 2 * t * (beta2**t) / (1 - beta2**t) <= 5:
        t += 1
    return float(t)


def radam(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    r"""RAdam exactly as ``torch.optim.RAdam``.

    .. math::
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        \theta_t &= \theta_{t-1} - \eta \frac{m_t}{1 - \beta_1^t} \cdot
        \begin{cases} r_t \dfrac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\
        1 & \text{otherwise} \end{cases}, \qquad
        r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)
        \rho_t}}

    Differences from optax: ``optax.radam`` rectifies when :math:`\rho_t \ge 5` (torch: strictly
    greater) and adds ``eps`` after the bias correction (torch: before it).
    """
    check_lr(lr)
    check_eps(eps)
    check_betas(betas)
    check_weight_decay(weight_decay)
    check_flags(foreach, None, capturable, differentiable)
    decay = not is_zero(weight_decay)
    beta1, beta2 = betas
    b2_number = concrete(beta2)
    first_rectified = None if b2_number is None else _first_rectified_step(b2_number)

    def init_fn(params):
        return RAdamState(zero_count(), tree_zeros_like(params), tree_zeros_like(params))

    def update_fn(grads, state, params=None):
        count = state.count
        b2, eps_t, wd_t = (value_at(h, count) for h in (beta2, eps, weight_decay))
        lr_t = lr_value(lr, count)
        b1c, b2c = complement(beta1, count), complement(beta2, count)
        if decay:
            need_params("radam", params)
        t = count + 1
        bc1 = one_minus_pow(beta1, t)
        bc2 = one_minus_pow(beta2, t)
        rho_inf = 2 / b2c - 1
        rho_t = rho_inf - 2 * t * pow_t(beta2, t) / bc2
        rectified = rho_t > 5 if first_rectified is None else t >= first_rectified
        safe_rho = jnp.where(rectified, rho_t, 5.0)
        rect = jnp.sqrt(
            (safe_rho - 4) * (safe_rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe_rho)
        )
        bc2_sqrt = jnp.sqrt(bc2)

        def leaf(g, p, m, v):
            dtype = compute_dtype(g)
            c = lambda x: cast(x, dtype)  # noqa: E731
            g, shrink, m_new, v_new = adam_moments(
                g, p, m, v, dtype, maximize=maximize, decay=decay,
                decoupled=decoupled_weight_decay, lr=lr_t, wd=wd_t, b2=b2, b1c=b1c, b2c=b2c,
            )  # fmt: skip
            corrected = m_new / c(bc1)
            adaptive = c(bc2_sqrt) / (jnp.sqrt(v_new) + c(eps_t))
            step = jnp.where(
                rectified, corrected * c(lr_t) * adaptive * c(rect), corrected * c(lr_t)
            )
            update = -step if shrink is None else shrink - step
            return update.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        updates, m, v = map_leaves(
            leaf, grads, params if decay else None, state.exp_avg, state.exp_avg_sq
        )
        return updates, RAdamState(t, m, v)

    return optax.GradientTransformation(init_fn, update_fn)


RADAM = TorchSpec(
    name="RAdam",
    factory=radam,
    keys=words(
        "lr betas eps weight_decay "
        "maximize foreach capturable decoupled_weight_decay differentiable"
    ),
)
