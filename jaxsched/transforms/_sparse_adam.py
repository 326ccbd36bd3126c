r"""Torch's SparseAdam: Adam's moments and step, only where a sparse gradient has entries.

With the gradient a :class:`jax.experimental.sparse.BCOO` (e.g. an embedding lookup's
gradient made sparse), its duplicate indices summed first (torch's ``coalesce``), and
:math:`S` its stored positions, at every :math:`i \in S`:

.. math::
    m_i &\leftarrow m_i + (1 - \beta_1)(g_i - m_i), \qquad
    v_i \leftarrow v_i + (1 - \beta_2)(g_i^2 - v_i) \\
    \theta_i &\leftarrow \theta_i - \eta \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
        \frac{m_i}{\sqrt{v_i} + \epsilon}

and nothing changes elsewhere (torch's "lazy" Adam): a stored entry counts even when its
value is 0, an absent one never decays.  The step :math:`t` counts every update, also one
whose gradient stores nothing (torch counts it before it finds the gradient empty).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.experimental import sparse

from .._validation import check, check_betas, check_one_element_lr
from ._common import (
    Hyperparam,
    cast,
    complement,
    compute_dtype,
    one_minus_pow,
    tree_zeros_like,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words

DENSE_GRADIENT = "SparseAdam does not support dense gradients, please consider Adam instead"


class SparseAdamState(NamedTuple):
    """torch's per-parameter ``step`` (``count``, shared: every leaf steps together),
    ``exp_avg`` and ``exp_avg_sq``."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    exp_avg: Any
    exp_avg_sq: Any


def is_sparse(x: Any) -> bool:
    return isinstance(x, sparse.BCOO)


def sparse_adam(
    lr: Hyperparam = 1e-3,
    betas: tuple[Hyperparam, Hyperparam] = (0.9, 0.999),
    eps: Hyperparam = 1e-8,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""SparseAdam exactly as ``torch.optim.SparseAdam`` (see the module docstring).

    ``update(grads, state, params)``: every leaf of ``grads`` must be a
    ``jax.experimental.sparse.BCOO`` of the parameter's shape (any number of sparse leading
    dimensions, e.g. an embedding's rows with dense columns); a dense gradient raises torch's
    ``RuntimeError``.  The moments are read and written only at the stored indices; the
    returned updates are dense (zero off the indices), as ``optax.apply_updates`` needs.  The
    stateful :class:`jaxsched.optim.SparseAdam` applies the same values by index.

    Differences from optax: optax has no lazy Adam; ``optax.adam`` on a densified gradient
    decays every moment at every step.
    """
    check_one_element_lr(lr)
    check(lr, lambda v: v > 0.0, "Invalid learning rate: {}")
    check(eps, lambda v: v > 0.0, "Invalid epsilon value: {}")
    check_betas(betas)
    beta1, beta2 = betas

    def init_fn(params):
        return SparseAdamState(zero_count(), tree_zeros_like(params), tree_zeros_like(params))

    def update_fn(grads, state, params=None):
        del params
        count = state.count
        t = count + 1
        bias1, bias2 = one_minus_pow(beta1, t), one_minus_pow(beta2, t)
        # torch: lr * math.sqrt(bias_correction2) / bias_correction1, in double
        step_size = value_at(lr, count) * jnp.sqrt(bias2) / bias1
        one_minus_b1, one_minus_b2 = complement(beta1, count), complement(beta2, count)
        treedef = jax.tree.structure(state.exp_avg)
        try:
            grad_leaves = treedef.flatten_up_to(grads)
        except (ValueError, TypeError) as err:
            raise ValueError(f"grads do not match the parameters: {err}") from None
        updates, exp_avg, exp_avg_sq = [], [], []
        for g, m, v in zip(
            grad_leaves, treedef.flatten_up_to(state.exp_avg),
            treedef.flatten_up_to(state.exp_avg_sq), strict=True,
        ):  # fmt: skip
            index, values, m, v = leaf_step(
                g, m, v, one_minus_b1, one_minus_b2, eps, step_size, maximize, count
            )
            updates.append(_add_at(jnp.zeros_like(m), index, values))
            exp_avg.append(m)
            exp_avg_sq.append(v)
        unflatten = treedef.unflatten
        return unflatten(updates), SparseAdamState(t, unflatten(exp_avg), unflatten(exp_avg_sq))

    return optax.GradientTransformation(init_fn, update_fn)


def leaf_step(g, m, v, one_minus_b1, one_minus_b2, eps, step_size, maximize, count):
    """One parameter: the index tuple of the (coalesced) gradient's entries, the parameter
    change at those entries, and the new moments."""
    if not is_sparse(g):
        raise RuntimeError(DENSE_GRADIENT)
    if g.shape != m.shape:
        raise ValueError(f"sparse gradient of shape {g.shape} for a parameter of shape {m.shape}")
    if g.n_batch:
        raise ValueError("batched BCOO gradients are not supported (n_batch must be 0)")
    g = g.sum_duplicates(nse=g.nse)  # torch's coalesce; padding lands out of bounds
    index = tuple(g.indices[:, k] for k in range(g.n_sparse))
    dtype = compute_dtype(m)
    c = lambda x: cast(x, dtype)  # noqa: E731
    values = c(-g.data if maximize else g.data)
    old_m = _rows(m, index).astype(dtype)
    old_v = _rows(v, index).astype(dtype)
    delta_m = (values - old_m) * c(one_minus_b1)
    delta_v = (values * values - old_v) * c(one_minus_b2)
    m, v = _add_at(m, index, delta_m), _add_at(v, index, delta_v)
    denom = jnp.sqrt(delta_v + old_v) + c(value_at(eps, count))
    change = c(-step_size) * ((delta_m + old_m) / denom)
    return index, change, m, v


def _explicit(x: jax.Array) -> Any:
    """``x``'s sharding when it is explicitly sharded (JAX then asks where a gather or a
    scatter's result lies), else ``None``."""
    sharding = jax.typeof(x).sharding
    return sharding if any(axis is not None for axis in getattr(sharding, "spec", ())) else None


def _add_at(x: jax.Array, index: tuple[jax.Array, ...], values: jax.Array) -> jax.Array:
    """``x`` plus ``values`` at the gradient's entries (padding dropped), kept where ``x`` is."""
    sharding = _explicit(x)
    extra = {} if sharding is None else {"out_sharding": sharding}
    return x.at[index].add(values.astype(x.dtype), mode="drop", **extra)


def _rows(x: jax.Array, index: tuple[jax.Array, ...]) -> jax.Array:
    """``x`` at the gradient's entries (0 at padding).  On an explicitly sharded array the
    entries are gathered replicated (they are few: the gradient's, never the table)."""
    sharding = _explicit(x)
    if sharding is not None:
        out = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        return x.at[index].get(mode="fill", fill_value=0, out_sharding=out)
    return x.at[index].get(mode="fill", fill_value=0)


SPARSE_ADAM = TorchSpec(
    name="SparseAdam",
    factory=sparse_adam,
    keys=words("lr betas eps maximize"),
    skips_missing=False,  # a missing gradient would need an empty BCOO per leaf: refused
)
