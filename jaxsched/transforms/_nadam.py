"""Torch's NAdam: Adam with a Nesterov look-ahead and the momentum-decay schedule."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check, check_betas, check_eps, check_flags, check_lr, check_weight_decay
from ._common import (
    Hyperparam,
    adam_moments,
    cast,
    complement,
    compute_dtype,
    is_zero,
    like_lr,
    lr_value,
    map_leaves,
    need_params,
    one_minus_pow,
    pow_t,
    scalar_dtype,
    tree_zeros_like,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words


class NAdamState(NamedTuple):
    """``mu_product`` is a float32 scalar, as torch keeps it (also for float64 parameters)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    mu_product: jax.Array
    exp_avg: Any
    exp_avg_sq: Any


def nadam(
    lr: Hyperparam = 2e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0.0,
    momentum_decay: Hyperparam = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    r"""NAdam exactly as ``torch.optim.NAdam``.

    With :math:`\psi` = ``momentum_decay`` and
    :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi})`, :math:`\Pi_t = \prod_{i \le t} \mu_i`:

    .. math::
        m_t, v_t &\text{ as in Adam}, \qquad d_t = \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        \theta_t &= \theta_{t-1} - \eta\frac{1 - \mu_t}{1 - \Pi_t}\frac{g_t}{d_t}
                   - \eta\frac{\mu_{t+1}}{1 - \Pi_t\mu_{t+1}}\frac{m_t}{d_t}

    Weight decay is coupled (L2) or, with ``decoupled_weight_decay``, a multiplication of the
    parameters by :math:`1 - \eta\lambda`.  :math:`\Pi_t` is accumulated in float32 as torch does.
    Differences from optax: ``optax.nadam`` has no :math:`\psi` schedule (its :math:`\mu` is
    constant) and no weight decay.
    """
    check_lr(lr)
    check_eps(eps)
    check_betas(betas)
    check_weight_decay(weight_decay)
    check(momentum_decay, lambda v: v >= 0.0, "Invalid momentum_decay value: {}")
    check_flags(foreach, None, capturable, differentiable)
    decay = not is_zero(weight_decay)
    beta1, beta2 = betas

    def init_fn(params):
        return NAdamState(
            zero_count(),
            jnp.ones((), jnp.float32),
            tree_zeros_like(params),
            tree_zeros_like(params),
        )

    def update_fn(grads, state, params=None):
        count = state.count
        b1, b2, eps_t, wd_t, psi = (
            value_at(h, count) for h in (beta1, beta2, eps, weight_decay, momentum_decay)
        )
        lr_t = lr_value(lr, count)
        b1c, b2c = complement(beta1, count), complement(beta2, count)
        if decay:
            need_params("nadam", params)
        t = count + 1
        sd = scalar_dtype()
        mu = b1 * (1.0 - 0.5 * pow_t(0.96, t * jnp.ones((), sd) * psi))
        mu_next = b1 * (1.0 - 0.5 * pow_t(0.96, (t + 1) * jnp.ones((), sd) * psi))
        mu_product = state.mu_product * mu.astype(jnp.float32)  # torch's float32 state
        prod = mu_product.astype(sd)
        coef_g = -lr_t * like_lr(1.0 - mu, lr_t) / like_lr(1.0 - prod, lr_t)
        coef_m = (-lr_t * like_lr(mu_next, lr_t)) / like_lr(1.0 - prod * mu_next, lr_t)
        bc2 = one_minus_pow(beta2, t)

        def leaf(g, p, m, v):
            dtype = compute_dtype(g)
            c = lambda x: cast(x, dtype)  # noqa: E731
            g, shrink, m_new, v_new = adam_moments(
                g, p, m, v, dtype, maximize=maximize, decay=decay,
                decoupled=decoupled_weight_decay, lr=lr_t, wd=wd_t, b2=b2, b1c=b1c, b2c=b2c,
            )  # fmt: skip
            denom = jnp.sqrt(v_new / c(bc2)) + c(eps_t)
            update = c(coef_g) * (g / denom) + c(coef_m) * (m_new / denom)
            if shrink is not None:
                update = shrink + update
            return update.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype)

        updates, m, v = map_leaves(
            leaf, grads, params if decay else None, state.exp_avg, state.exp_avg_sq
        )
        return updates, NAdamState(t, mu_product, m, v)

    return optax.GradientTransformation(init_fn, update_fn)


NADAM = TorchSpec(
    name="NAdam",
    factory=nadam,
    keys=words(
        "lr betas eps weight_decay momentum_decay "
        "decoupled_weight_decay maximize foreach capturable differentiable"
    ),
)
