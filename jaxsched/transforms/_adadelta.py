"""Torch's Adadelta: rates from running averages of squared gradients and updates."""

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


class AdadeltaState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    square_avg: Any
    acc_delta: Any


def adadelta(
    lr: Hyperparam = 1.0,
    rho: Hyperparam = 0.9,
    eps: Hyperparam = 1e-6,
    weight_decay: Hyperparam = 0.0,
    foreach: bool | None = None,
    *,
    capturable: bool = False,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    r"""Adadelta exactly as ``torch.optim.Adadelta``.

    .. math::
        v_t &= \rho v_{t-1} + (1 - \rho) g_t^2, \qquad
        \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t \\
        u_t &= \rho u_{t-1} + (1 - \rho) \Delta_t^2, \qquad \theta_t = \theta_{t-1} - \eta \Delta_t

    Differences from optax: same maths as ``optax.adadelta``, which has no default learning
    rate (torch: 1.0), no weight decay and no maximize.
    """
    check_lr(lr)
    check(rho, lambda v: 0.0 <= v <= 1.0, "Invalid rho value: {}")
    check_eps(eps)
    check_weight_decay(weight_decay)
    check_flags(foreach, None, capturable, differentiable)
    decay = not is_zero(weight_decay)

    def init_fn(params):
        return AdadeltaState(zero_count(), tree_zeros_like(params), tree_zeros_like(params))

    def update_fn(grads, state, params=None):
        count = state.count
        lr_t, rho_t, eps_t, wd_t = (value_at(h, count) for h in (lr, rho, eps, weight_decay))
        rho_c = complement(rho, count)
        if decay:
            need_params("adadelta", params)

        def leaf(g, p, v, u):
            dtype = compute_dtype(g)
            g = signed_grad(g, p, wd_t, decay, maximize, dtype)
            e, r = cast(eps_t, dtype), cast(rho_t, dtype)
            v_new = cast(v, dtype) * r + g * g * cast(rho_c, dtype)
            delta = jnp.sqrt(cast(u, dtype) + e) / jnp.sqrt(v_new + e) * g
            u_new = cast(u, dtype) * r + delta * delta * cast(rho_c, dtype)
            update = cast(-lr_t, dtype) * delta
            return update.astype(g.dtype), v_new.astype(v.dtype), u_new.astype(u.dtype)

        updates, v, u = map_leaves(
            leaf, grads, params if decay else None, state.square_avg, state.acc_delta
        )
        return updates, AdadeltaState(count + 1, v, u)

    return optax.GradientTransformation(init_fn, update_fn)


ADADELTA = TorchSpec(
    name="Adadelta",
    factory=adadelta,
    keys=words("lr rho eps weight_decay maximize capturable foreach differentiable"),
)
