r"""``torch.optim.swa_utils.update_bn`` for flax linen models: recompute every BatchNorm's
running statistics as the cumulative average over a pass through the data.

torch resets each BatchNorm's statistics (mean 0, var 1), sets ``momentum=None`` (a cumulative
average) and runs the model in train mode over the loader; after :math:`N` batches

.. math::
    \mu = \mu_{N}, \quad \mu_k = \mu_{k-1} + \tfrac{1}{k}(m_k - \mu_{k-1}), \qquad
    \sigma^2 \text{ likewise from } \tfrac{n}{n-1} v_k

with :math:`m_k, v_k` batch :math:`k`'s mean and (biased) variance over :math:`n` elements per
feature: torch keeps the unbiased variance.  Here the model runs in train mode (each BatchNorm
normalises with its batch's statistics, as torch's forward does), every ``nn.BatchNorm`` call
is intercepted to read its input's statistics, and the averages replace ``batch_stats``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp


def _stats(module: Any, x: jax.Array) -> tuple[jax.Array, jax.Array, int]:
    """A BatchNorm call's batch mean, biased variance (float32, two-pass) and count."""
    axes = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    features = {a % x.ndim for a in axes}
    reduce = tuple(i for i in range(x.ndim) if i not in features)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x, axis=reduce)
    var = jnp.mean(jnp.square(x - jnp.expand_dims(mean, reduce)), axis=reduce)
    count = 1
    for i in reduce:
        count *= x.shape[i]
    return mean, var, count


def update_bn(
    loader: Iterable[Any], model: Any, variables: Any, device: Any = None, **apply_kwargs: Any
) -> Any:
    """The variables of linen ``model`` with every ``nn.BatchNorm``'s ``batch_stats`` recomputed
    over ``loader`` as torch's ``update_bn`` does (each batch: an array, or a tuple/list whose
    first entry is the input; ``device``: where to put it).  ``apply_kwargs`` reach
    ``model.apply`` (e.g. ``train=True``: the BatchNorms must use batch statistics).  Returns
    new variables (JAX's are values); without BatchNorm, ``variables`` unchanged."""
    from flax import linen as nn  # flax is needed only here

    def forward(variables: Any, x: Any) -> dict[tuple[str, ...], tuple]:
        found: dict[tuple[str, ...], tuple] = {}

        def interceptor(next_fun, args, kwargs, context):
            module = context.module
            if isinstance(module, nn.BatchNorm) and context.method_name == "__call__":
                found[tuple(module.scope.path)] = _stats(module, args[0])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            model.apply(variables, x, mutable=["batch_stats"], **apply_kwargs)
        return found

    run = jax.jit(forward)
    averages: dict[tuple[str, ...], list[jax.Array]] = {}
    for batches, batch in enumerate(loader, 1):
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        if device is not None:
            batch = jax.device_put(batch, device)
        for path, (mean, var, count) in run(variables, batch).items():
            unbiased = var * (count / max(count - 1, 1))
            if path not in averages:
                averages[path] = [jnp.zeros_like(mean), jnp.ones_like(unbiased)]
            running = averages[path]
            factor = 1.0 / batches  # torch: momentum None -> 1 / num_batches_tracked
            running[0] = (1 - factor) * running[0] + factor * mean
            running[1] = (1 - factor) * running[1] + factor * unbiased
    if not averages:
        return variables
    stats = dict(variables["batch_stats"])  # copied level by level along each path below
    for path, (mean, var) in averages.items():
        node = stats
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        old = dict(node[path[-1]])
        old["mean"] = mean.astype(old["mean"].dtype)
        old["var"] = var.astype(old["var"].dtype)
        node[path[-1]] = old
    return {**variables, "batch_stats": stats}
