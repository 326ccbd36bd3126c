"""Torch's SGD (momentum, dampening, Nesterov, coupled weight decay, maximize)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check, check_flags, check_lr, check_weight_decay, concrete
from ._common import (
    Hyperparam,
    cast,
    compute_dtype,
    is_zero,
    map_leaves,
    need_params,
    signed_grad,
    value_at,
    zero_count,
)
from ._spec import KernelAdapter, TorchSpec, words


class SGDState(NamedTuple):
    """``count``: updates applied; ``momentum_buffer``: torch's buffer (``None`` without
    momentum, as torch keeps no state then); ``momentum_steps``: the updates that used a
    non-zero momentum (torch creates the buffer from the gradient at the first of them and
    leaves it untouched while the momentum is 0)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    momentum_buffer: Any
    momentum_steps: Any = None


def sgd(
    lr: Hyperparam = 1e-3,
    momentum: Hyperparam = 0.0,
    dampening: Hyperparam = 0.0,
    weight_decay: Hyperparam = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    r"""Stochastic gradient descent exactly as ``torch.optim.SGD``.

    With :math:`\mu` = ``momentum``, :math:`\tau` = ``dampening``, :math:`\lambda` =
    ``weight_decay`` and :math:`t` the step (1 on the first update):

    .. math::
        g_t &\leftarrow \pm g_t + \lambda \theta_{t-1} \\
        b_t &= \begin{cases} g_t & t = 1 \\ \mu b_{t-1} + (1 - \tau) g_t & t > 1 \end{cases} \\
        d_t &= g_t + \mu b_t \ \text{(Nesterov)} \quad \text{or} \quad b_t \\
        \theta_t &= \theta_{t-1} - \eta\, d_t

    The updates returned are :math:`-\eta d_t`; ``optax.apply_updates`` then gives torch's
    parameters.  ``lr`` and the other numeric arguments may be floats, scalar arrays or schedules
    ``count -> value``.  ``foreach``/``fused``/``differentiable`` are accepted and ignored.

    Differences from optax: ``optax.sgd`` starts its momentum trace from zeros (torch from the
    first gradient), has no dampening, weight decay or maximize.
    """
    check_lr(lr)
    check(momentum, lambda v: v >= 0.0, "Invalid momentum value: {}")
    check_weight_decay(weight_decay)
    mom, damp = concrete(momentum), concrete(dampening)
    if nesterov and mom is not None and damp is not None and (mom == 0 or damp != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    check_flags(foreach, fused, False, differentiable)
    use_buffer = not is_zero(momentum)
    decay = not is_zero(weight_decay)

    def init_fn(params):
        if not use_buffer:
            return SGDState(zero_count(), None)
        buffer = jax.tree.map(jnp.zeros_like, params)
        return SGDState(zero_count(), buffer, zero_count())

    def update_fn(grads, state, params=None):
        count = state.count
        lr_t, mom_t, damp_t, wd_t = (
            value_at(h, count) for h in (lr, momentum, dampening, weight_decay)
        )
        if decay:
            need_params("sgd", params)
        has_buffer = None if state.momentum_steps is None else state.momentum_steps > 0

        def leaf(g, p, buf):
            dtype = compute_dtype(g)
            d = signed_grad(g, p, wd_t, decay, maximize, dtype)
            new_buf = None
            if use_buffer:
                mom = cast(mom_t, dtype)
                blended = buf.astype(dtype) * mom + d * cast(1 - damp_t, dtype)
                # torch: the buffer starts as the gradient at the first step with momentum, and
                # a step at momentum 0 neither uses nor touches it (so dampening is inert then)
                new_buf = jnp.where(mom == 0, buf.astype(dtype), jnp.where(has_buffer, blended, d))
                direction = d + mom * new_buf if nesterov else new_buf
                d = jnp.where(mom == 0, d, direction)
                new_buf = new_buf.astype(buf.dtype)
            return (cast(-lr_t, dtype) * d).astype(g.dtype), new_buf

        updates, buffer = map_leaves(leaf, grads, params if decay else None, state.momentum_buffer)
        if not use_buffer:
            return updates, SGDState(count + 1, buffer)
        steps = _momentum_steps(state.momentum_steps, mom_t)
        return updates, SGDState(count + 1, buffer, steps)

    return optax.GradientTransformation(init_fn, update_fn)


def _momentum_steps(steps: jax.Array, momentum: Any) -> jax.Array:
    """Steps that used a non-zero momentum (torch's "the buffer exists" once it is > 0),
    advanced by one step with ``momentum`` (the transform and the kernel adapter)."""
    return steps + (jnp.asarray(momentum) != 0).astype(jnp.int32)


# -- torch's SGD and its CPU kernel ---------------------------------------------------------------


def _kernel_scalars(hyper, derived, state):
    return {
        "neg_lr": -hyper["lr"],
        "momentum": hyper["momentum"],
        "one_minus_dampening": derived["one_minus_dampening"],
        "weight_decay": hyper["weight_decay"],
        "no_buffer": state.momentum_steps == 0,  # torch creates the buffer from this gradient
    }


SGD_KERNEL = KernelAdapter(
    entry="sgd",
    scalar_names=words("neg_lr momentum one_minus_dampening weight_decay no_buffer"),
    derive=lambda v: {"one_minus_dampening": 1.0 - float(v["dampening"])},
    scalars=_kernel_scalars,
    advance=lambda state, hyper: {
        "count": state.count + 1,
        "momentum_steps": _momentum_steps(state.momentum_steps, hyper["momentum"]),
    },
    flags=lambda s: {"maximize": bool(s["maximize"]), "nesterov": bool(s["nesterov"])},
    buffers=lambda s: ("momentum_buffer",),
)

SGD = TorchSpec(
    name="SGD",
    factory=sgd,
    keys=words("lr momentum dampening weight_decay nesterov maximize foreach differentiable fused"),
    step_entry=False,
    # torch's buffer exists once a step used momentum (and stays while the momentum is 0);
    # momentum_steps is ours, torch's "the buffer exists"
    state_when={
        "momentum_buffer": lambda g, s: int(s.momentum_steps) > 0,
        "momentum_steps": lambda g, s: False,
    },
    kernel=SGD_KERNEL,
)
