"""Torch's Rprop (resilient backpropagation)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check_flags, check_lr, concrete
from ._common import (
    Hyperparam,
    cast,
    compute_dtype,
    map_leaves,
    torch_sign,
    tree_zeros_like,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words


class RpropState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    prev: Any
    step_size: Any


def rprop(
    lr: Hyperparam = 1e-2,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50),
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    r"""Rprop exactly as ``torch.optim.Rprop``.

    Per coordinate, with :math:`s = \mathrm{sign}(g_t\, g_{t-1})`:

    .. math::
        \Delta_t = \mathrm{clip}\big(\Delta_{t-1} \cdot (\eta^+ [s > 0] + \eta^- [s < 0]
        + [s = 0]),\ \Delta_{min}, \Delta_{max}\big), \qquad
        \theta_t = \theta_{t-1} - \mathrm{sign}(\tilde g_t)\,\Delta_t

    where :math:`\tilde g_t = 0` where :math:`s < 0` (and is remembered as the previous gradient)
    and :math:`\Delta_0` = ``lr`` (the learning rate only seeds the step sizes, as in torch).
    Differences from optax: no namesake (``optax.scale_by_rprop`` seeds its step sizes from
    ``learning_rate`` too but does not zero the remembered gradient the same way).
    """
    check_lr(lr)
    if not isinstance(etas, (tuple, list)) or len(etas) != 2:
        raise ValueError(f"Expected etas to be a pair (etaminus, etaplus), but got {etas!r}")
    minus, plus = (concrete(e) for e in etas)
    if minus is not None and plus is not None and not 0.0 < minus < 1.0 < plus:
        raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
    low, high = (concrete(s) for s in step_sizes)
    if low is not None and high is not None and not 0.0 <= low <= high:
        raise ValueError(f"Invalid step_sizes values: {step_sizes[0]}, {step_sizes[1]}")
    check_flags(foreach, None, capturable, differentiable)

    def init_fn(params):
        lr0 = value_at(lr, zero_count())
        sizes = jax.tree.map(lambda p: jnp.full_like(p, lr0), params)
        return RpropState(zero_count(), tree_zeros_like(params), sizes)

    def update_fn(grads, state, params=None):
        del params
        minus, plus, low, high = (value_at(h, state.count) for h in (*etas, *step_sizes))

        def leaf(g, prev, size):
            dtype = compute_dtype(g)
            g = -cast(g, dtype) if maximize else cast(g, dtype)
            s = torch_sign(g * cast(prev, dtype))
            factor = jnp.where(s > 0, cast(plus, dtype), jnp.where(s < 0, cast(minus, dtype), 1.0))
            size_new = jnp.clip(cast(size, dtype) * factor, cast(low, dtype), cast(high, dtype))
            g = jnp.where(s < 0, 0.0, g).astype(dtype)
            update = -(torch_sign(g) * size_new)
            return update.astype(g.dtype), g.astype(prev.dtype), size_new.astype(size.dtype)

        updates, prev, sizes = map_leaves(leaf, grads, state.prev, state.step_size)
        return updates, RpropState(state.count + 1, prev, sizes)

    return optax.GradientTransformation(init_fn, update_fn)


RPROP = TorchSpec(
    name="Rprop",
    factory=rprop,
    keys=words("lr etas step_sizes foreach maximize differentiable capturable"),
)
