"""Torch's own Adafactor variant (``torch.optim.Adafactor``)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check
from ._common import (
    Hyperparam,
    cast,
    compute_dtype,
    float32_array,
    float32_round,
    is_zero,
    lerp,
    lr_value,
    map_leaves,
    need_params,
    python_max,
    scalar_dtype,
    step_to,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words


class AdafactorState(NamedTuple):
    """Per leaf: ``row_var``/``col_var`` (factored, for leaves with 2+ dims) or ``variance``
    (for vectors and scalars); ``None`` where torch keeps no such entry."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    row_var: Any
    col_var: Any
    variance: Any


def _norm(x: jax.Array) -> jax.Array:
    """torch's ``x.norm(2)``: the 2-norm of all elements, as one reduction over every axis."""
    return jnp.sqrt(jnp.sum(jnp.square(x)))


def adafactor(
    lr: Hyperparam = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: Hyperparam = 0.0,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Adafactor exactly as ``torch.optim.Adafactor`` (torch's parametrisation).

    With :math:`\hat\beta_t = t^{c}` (``beta2_decay`` :math:`= c \le 0`),
    :math:`\rho_t = \min(\eta, 1/\sqrt t)` and :math:`\alpha_t = \max(\epsilon_2,
    \mathrm{RMS}(\theta_{t-1}))\,\rho_t`:

    .. math::
        R_t &= \mathrm{lerp}(R_{t-1}, \overline{g_t^2}^{\,\text{rows}}, \hat\beta_t), \quad
        C_t = \mathrm{lerp}(C_{t-1}, \overline{g_t^2}^{\,\text{cols}}, \hat\beta_t), \quad
        \hat V_t = \frac{R_t C_t}{\max(\overline{R_t}, \epsilon_1)} \\
        U_t &= \frac{g_t}{\sqrt{\max(\hat V_t, \epsilon_1^2)}}, \qquad
        \theta_t = \theta_{t-1}(1 - \eta\lambda) - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U_t)/d)} U_t

    (vectors keep an unfactored :math:`V_t = \mathrm{lerp}(V_{t-1}, g_t^2, \hat\beta_t)`);
    :math:`\epsilon_1` defaults to the parameter dtype's machine epsilon.
    Differences from optax: ``optax.adafactor`` is the original paper's parametrisation
    (decay rate, clipping threshold, momentum options), not torch's.
    """
    check(lr, lambda v: v >= 0.0, "Learning rate should be >= 0 but is: {}")
    check(beta2_decay, lambda v: v <= 0.0, "beta2_decay should be <= 0 but is: {}")
    eps1, eps2 = eps
    if eps1 is not None:
        check(eps1, lambda v: v >= 0.0, "epsilon1 should be >= 0 but is: {}")
    check(eps2, lambda v: v >= 0.0, "epsilon2 should be >= 0 but is: {}")
    check(d, lambda v: v >= 1.0, "Clipping threshold d should be >= 1 but is: {}")
    check(weight_decay, lambda v: v >= 0.0, "weight_decay should be >= 0 but is: {}")
    del foreach
    decay = not is_zero(weight_decay)

    def init_fn(params):
        def factored(p, axis):
            if p.ndim < 2:
                return None
            shape = list(p.shape)
            shape[axis] = 1
            return jnp.zeros(shape, p.dtype)

        rows = jax.tree.map(lambda p: factored(p, -1), params)
        cols = jax.tree.map(lambda p: factored(p, -2), params)
        full = jax.tree.map(lambda p: jnp.zeros_like(p) if p.ndim < 2 else None, params)
        # a field with no entry at all is None, as update's map_leaves returns it (one
        # structure before and after a step)
        rows, cols, full = (None if not jax.tree.leaves(f) else f for f in (rows, cols, full))
        return AdafactorState(zero_count(), rows, cols, full)

    def update_fn(grads, state, params=None):
        need_params("adafactor", params)
        count = state.count
        lr_t = lr_value(lr, count)  # a float32 array: torch's float32 tensor lr
        tensor_lr = float32_array(lr_t)
        wd_t, decay_t, d_t, eps2_t = (
            value_at(h, count) for h in (weight_decay, beta2_decay, d, eps2)
        )
        t = (count + 1).astype(scalar_dtype())
        weight = t**decay_t
        if tensor_lr:
            # torch: rho = min(lr, 1/sqrt(t)) keeps the float32 tensor lr unless the Python
            # float is smaller (compared in float32); lr's arithmetic is then float32
            lr32 = float32_round(lr_t)
            lr_wins = ~(float32_round(1 / t**0.5) < lr32)
            rho = jnp.where(lr_wins, lr32, 1 / t**0.5)
        else:
            rho = jnp.minimum(lr_t, 1 / t**0.5)

        def leaf(g, p, row, col, var):
            dtype = compute_dtype(g)
            c = lambda x: cast(x, dtype)  # noqa: E731
            g = -c(g) if maximize else c(g)
            p = c(p)
            e1 = float(jnp.finfo(p.dtype).eps) if eps1 is None else value_at(eps1, count)
            # the 2-norm over every element, without a reshape (which an explicitly sharded
            # array refuses)
            rms_p = _norm(p) / math.sqrt(max(p.size, 1))
            if tensor_lr:
                rms = python_max(eps2_t, rms_p.astype(scalar_dtype()))
                alpha = jnp.where(lr_wins, float32_round(float32_round(rms) * lr32), rms * rho)
            else:
                alpha = python_max(c(eps2_t), rms_p) * c(rho)
            w = c(weight)
            row_new = col_new = var_new = None
            if g.ndim > 1:
                row_mean = jnp.square(jnp.linalg.norm(g, axis=-1, keepdims=True)) / g.shape[-1]
                row_new = lerp(c(row), row_mean, w)
                col_mean = jnp.square(jnp.linalg.norm(g, axis=-2, keepdims=True)) / g.shape[-2]
                col_new = lerp(c(col), col_mean, w)
                estimate = row_new @ col_new
                estimate = estimate / jnp.maximum(jnp.mean(row_new, axis=-2, keepdims=True), e1)
                row_new, col_new = row_new.astype(row.dtype), col_new.astype(col.dtype)
            else:
                var_new = lerp(c(var), g * g, w)
                estimate = var_new
                var_new = var_new.astype(var.dtype)
            update = jax.lax.rsqrt(jnp.maximum(estimate, e1 * e1)) * g
            rms_u = _norm(update) / (math.sqrt(max(update.size, 1)) * c(d_t))
            if tensor_lr:
                denom = python_max(1.0, rms_u.astype(scalar_dtype()))
                scale = c(jnp.where(lr_wins, float32_round(-alpha / float32_round(denom)),
                                    -alpha / denom))  # fmt: skip
                factor = float32_round(1 - float32_round(lr32 * float32_round(wd_t)))
            else:
                scale = -alpha / python_max(c(1.0), rms_u)
                factor = 1 - lr_t * wd_t
            shrunk = p * c(factor) if decay else p
            p_new = shrunk + scale * update
            return step_to(p_new, p).astype(g.dtype), row_new, col_new, var_new

        updates, rows, cols, full = map_leaves(
            leaf, grads, params, state.row_var, state.col_var, state.variance
        )
        return updates, AdafactorState(count + 1, rows, cols, full)

    return optax.GradientTransformation(init_fn, update_fn)


ADAFACTOR = TorchSpec(
    name="Adafactor",
    factory=adafactor,
    keys=words("lr beta2_decay eps d weight_decay foreach maximize"),
)
