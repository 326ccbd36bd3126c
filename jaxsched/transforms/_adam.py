"""Torch's Adam and AdamW (bias corrections, eps after the root, amsgrad on the raw moment)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import (
    check_betas,
    check_betas_kind,
    check_eps,
    check_flags,
    check_lr,
    check_weight_decay,
)
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
    one_minus_exp,
    one_minus_pow,
    tree_zeros_like,
    value_at,
    zero_count,
)
from ._spec import KernelAdapter, TorchSpec, words


class AdamState(NamedTuple):
    """Torch's per-parameter ``step``/``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq`` (the last
    only with ``amsgrad``); one ``count`` serves every leaf, since they step together."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any


def adam(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0.0,
    amsgrad: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformation:
    r"""Adam exactly as ``torch.optim.Adam``.

    .. math::
        g_t &\leftarrow \pm g_t \; (+ \lambda\theta_{t-1} \text{ if coupled}), \qquad
        \theta_{t-1} \leftarrow \theta_{t-1}(1 - \eta\lambda) \text{ if decoupled} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ (amsgrad, on the raw moment) or } v_t \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t}\,
                   \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Every numeric argument may be a float, a scalar array or a schedule ``count -> value``.

    Differences from optax: ``optax.adam`` has no coupled L2 term; ``optax.amsgrad`` keeps the
    maximum of the *bias-corrected* second moment (torch: the raw one), so trajectories differ;
    ``optax.adamw``'s default weight decay is 1e-4 (torch 1e-2).
    """
    flags = (foreach, fused, capturable, differentiable)
    return _adam(
        "adam", lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, flags
    )


def adamw(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    r"""AdamW exactly as ``torch.optim.AdamW``: :func:`adam` with decoupled weight decay,
    :math:`\theta \leftarrow \theta (1 - \eta\lambda)` before the Adam step, default
    ``weight_decay=1e-2``.

    Differences from optax: ``optax.adamw`` defaults to ``weight_decay=1e-4`` and applies the
    decay to the update (``-lr * (adam + wd * p)``), which equals torch's up to rounding.
    """
    flags = (foreach, fused, capturable, differentiable)
    return _adam("adamw", lr, betas, eps, weight_decay, amsgrad, maximize, True, flags)


def _adam(name, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled, flags):
    """The shared body of :func:`adam` and :func:`adamw`: torch's checks (values first, then the
    implementation flags), then the transform."""
    check_lr(lr)
    check_eps(eps)
    check_betas(betas)
    check_weight_decay(weight_decay)
    check_betas_kind(betas)
    check_flags(*flags)
    beta1, beta2 = betas
    decay = not is_zero(weight_decay)

    def init_fn(params):
        # Three distinct buffers: a state that aliases one buffer twice cannot be donated.
        return AdamState(
            zero_count(),
            tree_zeros_like(params),
            tree_zeros_like(params),
            tree_zeros_like(params) if amsgrad else None,
        )

    def update_fn(grads, state, params=None):
        count = state.count
        t = count + 1
        b2, eps_t, wd_t = (value_at(h, count) for h in (beta2, eps, weight_decay))
        lr_t = lr_value(lr, count)
        b1c, b2c = complement(beta1, count), complement(beta2, count)
        if decay:
            need_params(name, params)
        step_size = lr_t / like_lr(one_minus_pow(beta1, t), lr_t)
        bc2_sqrt = jnp.sqrt(one_minus_pow(beta2, t))

        def leaf(g, p, m, v, vmax):
            dtype = compute_dtype(g)
            c = lambda x: cast(x, dtype)  # noqa: E731
            g, shrink, m_new, v_new = adam_moments(
                g, p, m, v, dtype, maximize=maximize, decay=decay, decoupled=decoupled,
                lr=lr_t, wd=wd_t, b2=b2, b1c=b1c, b2c=b2c,
            )  # fmt: skip
            vhat = v_new
            vmax_new = None
            if amsgrad:
                vhat = jnp.maximum(c(vmax), v_new)
                vmax_new = vhat.astype(vmax.dtype)
            denom = jnp.sqrt(vhat) / c(bc2_sqrt) + c(eps_t)
            update = c(-step_size) * (m_new / denom)
            if shrink is not None:
                update = shrink + update
            return (update.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype), vmax_new)

        updates, m, v, vmax = map_leaves(
            leaf,
            grads,
            params if decay else None,
            state.exp_avg,
            state.exp_avg_sq,
            state.max_exp_avg_sq,
        )
        return updates, AdamState(t, m, v, vmax)

    return optax.GradientTransformation(init_fn, update_fn)


# -- torch's Adam / AdamW and their CPU kernel ----------------------------------------------------


def _log(beta: float) -> float:
    return math.log(beta) if beta > 0 else -math.inf  # 1 - 0**t = 1 for t >= 1


def _kernel_derive(v: Mapping[str, Any]) -> dict[str, float]:
    b1, b2 = (float(b) for b in v["betas"])
    lr, wd = float(v["lr"]), float(v["weight_decay"])
    return {
        "one_minus_beta1": 1.0 - b1,
        "one_minus_beta2": 1.0 - b2,
        "log_beta1": _log(b1),
        "log_beta2": _log(b2),
        "decay_factor": 1.0 - lr * wd,
    }


def _kernel_scalars(hyper, derived, state):
    # the bias corrections as one_minus_pow computes them, with log(beta) from the host's double
    t = state.count + 1
    return {
        "neg_step_size": -hyper["lr"] / one_minus_exp(derived["log_beta1"], t),
        "bias_correction2_sqrt": jnp.sqrt(one_minus_exp(derived["log_beta2"], t)),
        "eps": hyper["eps"],
        "one_minus_beta1": derived["one_minus_beta1"],
        "beta2": hyper["betas"][1],
        "one_minus_beta2": derived["one_minus_beta2"],
        "weight_decay": hyper["weight_decay"],
        "decay_factor": derived["decay_factor"],
    }


def _kernel(decoupled: bool | None) -> KernelAdapter:
    """Adam's adapter (``decoupled=None``: the group's ``decoupled_weight_decay``) or AdamW's."""

    def flags(s: Mapping[str, Any]) -> dict[str, bool]:
        decay = bool(s["decoupled_weight_decay"]) if decoupled is None else decoupled
        return {"maximize": bool(s["maximize"]), "amsgrad": bool(s["amsgrad"]), "decoupled": decay}

    return KernelAdapter(
        entry="adam",
        scalar_names=words(
            "neg_step_size bias_correction2_sqrt eps one_minus_beta1 "
            "beta2 one_minus_beta2 weight_decay decay_factor"
        ),
        derive=_kernel_derive,
        scalars=_kernel_scalars,
        advance=lambda state, hyper: {"count": state.count + 1},
        flags=flags,
        buffers=lambda s: ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if s["amsgrad"] else ()),
    )


_KEYS = words(
    "lr betas eps weight_decay amsgrad "
    "maximize foreach capturable differentiable fused decoupled_weight_decay"
)
ADAM = TorchSpec(name="Adam", factory=adam, keys=_KEYS, kernel=_kernel(None))
ADAMW = TorchSpec(
    name="AdamW",
    factory=adamw,
    keys=_KEYS,
    fixed={"decoupled_weight_decay": True},
    kernel=_kernel(True),
)
