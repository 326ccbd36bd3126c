"""Per-coordinate adaptive rates: torch's Adagrad, Adadelta, Adamax and RMSprop."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ._common import (
    Hyperparam,
    cast,
    check,
    check_betas,
    check_eps,
    check_flags,
    check_lr,
    check_weight_decay,
    complement,
    compute_dtype,
    is_zero,
    map_leaves,
    need_params,
    one_minus_pow,
    signed_grad,
    tree_zeros_like,
    value_at,
)

_COUNT0 = lambda: jnp.zeros((), jnp.int32)  # noqa: E731


class AdagradState(NamedTuple):
    count: jax.Array
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
        return AdagradState(_COUNT0(), acc)

    def update_fn(grads, state, params=None):
        count = state.count
        lr_t, lrd_t, wd_t, eps_t = (value_at(h, count) for h in (lr, lr_decay, weight_decay, eps))
        if decay:
            need_params("adagrad", params)
        clr = lr_t / (1 + count * lrd_t)  # torch: (step - 1) * lr_decay with step = count + 1

        def leaf(g, p, s):
            dtype = compute_dtype(g)
            g = signed_grad(g, p, wd_t, decay, maximize, dtype)
            s_new = cast(s, dtype) + g * g
            update = cast(-clr, dtype) * (g / (jnp.sqrt(s_new) + cast(eps_t, dtype)))
            return update.astype(g.dtype), s_new.astype(s.dtype)

        updates, acc = map_leaves(leaf, grads, params if decay else None, state.sum)
        return updates, AdagradState(count + 1, acc)

    return optax.GradientTransformation(init_fn, update_fn)


class AdadeltaState(NamedTuple):
    count: jax.Array
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
        return AdadeltaState(_COUNT0(), tree_zeros_like(params), tree_zeros_like(params))

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


class AdamaxState(NamedTuple):
    count: jax.Array
    exp_avg: Any
    exp_inf: Any


def adamax(
    lr: Hyperparam = 2e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0.0,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> optax.GradientTransformation:
    r"""Adamax exactly as ``torch.optim.Adamax``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \quad
        \theta_t = \theta_{t-1} - \frac{\eta}{1 - \beta_1^t} \frac{m_t}{u_t}

    Differences from optax: ``optax.adamax`` has the same update (measured: 2.5e-8 relative to
    torch after 1000 float32 steps); it has no weight decay and no maximize.
    """
    check_lr(lr)
    check_eps(eps)
    check_betas(betas)
    check_weight_decay(weight_decay)
    check_flags(foreach, None, capturable, differentiable)
    decay = not is_zero(weight_decay)
    beta1, beta2 = betas

    def init_fn(params):
        return AdamaxState(_COUNT0(), tree_zeros_like(params), tree_zeros_like(params))

    def update_fn(grads, state, params=None):
        count = state.count
        lr_t, b2, eps_t, wd_t = (value_at(h, count) for h in (lr, beta2, eps, weight_decay))
        b1c = complement(beta1, count)
        if decay:
            need_params("adamax", params)
        clr = lr_t / one_minus_pow(beta1, count + 1)

        def leaf(g, p, m, u):
            dtype = compute_dtype(g)
            g = signed_grad(g, p, wd_t, decay, maximize, dtype)
            m_new = cast(m, dtype) + (g - cast(m, dtype)) * cast(b1c, dtype)
            u_new = jnp.maximum(cast(u, dtype) * cast(b2, dtype), jnp.abs(g) + cast(eps_t, dtype))
            update = cast(-clr, dtype) * (m_new / u_new)
            return update.astype(g.dtype), m_new.astype(m.dtype), u_new.astype(u.dtype)

        updates, m, u = map_leaves(
            leaf, grads, params if decay else None, state.exp_avg, state.exp_inf
        )
        return updates, AdamaxState(count + 1, m, u)

    return optax.GradientTransformation(init_fn, update_fn)


class RMSpropState(NamedTuple):
    """``momentum_buffer`` only with a momentum; ``grad_avg`` only when ``centered`` (torch's
    order of its per-parameter state)."""

    count: jax.Array
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
            count=_COUNT0(),
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
