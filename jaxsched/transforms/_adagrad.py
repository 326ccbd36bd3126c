"""Torch's Adagrad: per-coordinate rates from the sum of squared gradients."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check, check_eps, check_flags, check_lr, check_weight_decay
from ._common import (
    Hyperparam,
    cast,
    compute_dtype,
    is_zero,
    like_lr,
    lr_value,
    map_leaves,
    need_params,
    signed_grad,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words


class AdagradState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    sum: Any


def adagrad(
    lr: Hyperparam = 1e-2,
    lr_decay: Hyperparam = 0.0,
    weight_decay: Hyperparam = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: Hyperparam = 1e-10,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    r"""Adagrad exactly as ``torch.optim.Adagrad``.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad
        \theta_t = \theta_{t-1} - \frac{\eta}{1 + (t - 1)\delta} \frac{g_t}{\sqrt{s_t} + \epsilon}

    with :math:`\delta` = ``lr_decay``, :math:`s_0` = ``initial_accumulator_value`` and coupled
    weight decay.  Differences from optax: ``optax.adagrad`` starts the accumulator at 0.1, puts
    ``eps`` (1e-7) inside the square root and has no ``lr_decay``.
    """
    check_lr(lr)
    check(lr_decay, lambda v: v >= 0.0, "Invalid lr_decay value: {}")
    check_weight_decay(weight_decay)
    check(
        initial_accumulator_value,
        lambda v: v >= 0.0,
        "Invalid initial_accumulator_value value: {}",
    )
    check_eps(eps)
    check_flags(foreach, fused, False, differentiable)
    decay = not is_zero(weight_decay)

    def init_fn(params):
        acc = jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        return AdagradState(zero_count(), acc)

    def update_fn(grads, state, params=None):
        count = state.count
        lrd_t, wd_t, eps_t = (value_at(h, count) for h in (lr_decay, weight_decay, eps))
        lr_t = lr_value(lr, count)
        if decay:
            need_params("adagrad", params)
        clr = lr_t / like_lr(1 + count * lrd_t, lr_t)  # torch: 1 + (step - 1) * lr_decay

        def leaf(g, p, s):
            dtype = compute_dtype(g)
            g = signed_grad(g, p, wd_t, decay, maximize, dtype)
            s_new = cast(s, dtype) + g * g
            update = cast(-clr, dtype) * (g / (jnp.sqrt(s_new) + cast(eps_t, dtype)))
            return update.astype(g.dtype), s_new.astype(s.dtype)

        updates, acc = map_leaves(leaf, grads, params if decay else None, state.sum)
        return updates, AdagradState(count + 1, acc)

    return optax.GradientTransformation(init_fn, update_fn)


ADAGRAD = TorchSpec(
    name="Adagrad",
    factory=adagrad,
    keys=words(
        "lr lr_decay eps weight_decay "
        "initial_accumulator_value foreach maximize differentiable fused"
    ),
    from_constructor=("initial_accumulator_value",),
    state_at_construction=True,
)
