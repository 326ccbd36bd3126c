r"""``torch.optim.swa_utils.update_bn`` for flax models (linen and nnx): recompute every
BatchNorm's running statistics as the cumulative average over a pass through the data.

torch resets each BatchNorm's statistics (mean 0, var 1), sets ``momentum=None`` (a cumulative
average) and runs the model in train mode over the loader; after :math:`N` batches

.. math::
    \mu = \mu_{N}, \quad \mu_k = \mu_{k-1} + \tfrac{1}{k}(m_k - \mu_{k-1}), \qquad
    \sigma^2 \text{ likewise from } \tfrac{n}{n-1} v_k

with :math:`m_k, v_k` batch :math:`k`'s mean and (biased) variance over :math:`n` elements per
feature: torch keeps the unbiased variance.  Here the model runs in train mode (each BatchNorm
normalises with its batch's statistics, as torch's forward does).  linen: every
``nn.BatchNorm`` call is intercepted to read its input's statistics, and the averages replace
``batch_stats``.  nnx: every ``nnx.BatchNorm`` runs with momentum 0 and two-pass variance, so
that after a batch its ``mean``/``var`` hold that batch's statistics; its output's shape (read
with ``nnx.capture``) gives :math:`n`; the averages are written into the modules at the end
and their settings restored.
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


class _CumulativeAverage:
    """torch's BatchNorm with ``momentum=None``: each batch's mean and unbiased variance
    averaged with weight ``1 / batches``, starting from mean 0 and variance 1."""

    def __init__(self) -> None:
        self.running: dict[Any, list[jax.Array]] = {}
        self.batches: dict[Any, int] = {}

    def add(self, key: Any, mean: jax.Array, var: jax.Array, count: int) -> None:
        unbiased = var * (count / max(count - 1, 1))
        if key not in self.running:
            self.running[key] = [jnp.zeros_like(mean), jnp.ones_like(unbiased)]
            self.batches[key] = 0
        self.batches[key] += 1
        running = self.running[key]
        factor = 1.0 / self.batches[key]  # torch: momentum None -> 1 / num_batches_tracked
        running[0] = (1 - factor) * running[0] + factor * mean
        running[1] = (1 - factor) * running[1] + factor * unbiased


def _inputs(loader: Iterable[Any], device: Any) -> Iterable[Any]:
    """torch's reading of a loader: each batch an array, or a tuple/list whose first entry is
    the input."""
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        yield batch if device is None else jax.device_put(batch, device)


def update_bn(
    loader: Iterable[Any],
    model: Any,
    variables: Any = None,
    device: Any = None,
    **apply_kwargs: Any,
) -> Any:
    """Recompute every BatchNorm's running statistics over ``loader`` as torch's ``update_bn``
    does (each batch: an array, or a tuple/list whose first entry is the input; ``device``:
    where to put it).

    - linen ``model`` with its ``variables``: returns new variables with ``batch_stats``
      replaced (JAX's are values); ``apply_kwargs`` reach ``model.apply`` (e.g. ``train=True``:
      the BatchNorms must use batch statistics).  Without BatchNorm, ``variables`` unchanged.
    - nnx ``model`` (no ``variables``): updates its ``nnx.BatchNorm`` modules in place and
      returns ``None``, as torch; ``apply_kwargs`` reach ``model(x, ...)``.  Each BatchNorm
      runs on batch statistics during the pass (``use_running_average=False``, torch's train
      mode) and gets its settings back afterwards.  A BatchNorm called more than once per
      forward pass is refused (its statistics per call cannot be read back).
    """
    from flax import nnx

    if isinstance(model, nnx.Module):
        if variables is not None:
            raise TypeError(
                "update_bn: an nnx model holds its own statistics; pass no variables "
                f"(got {type(variables).__name__})"
            )
        return _update_nnx(loader, model, device, apply_kwargs)
    if variables is None:
        raise TypeError("update_bn: a linen model needs its variables (model, variables)")
    return _update_linen(loader, model, variables, device, apply_kwargs)


def _update_nnx(loader: Iterable[Any], model: Any, device: Any, call_kwargs: dict) -> None:
    from flax import nnx

    norms = [(path, m) for path, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)]
    if not norms:
        return None
    settings = ("momentum", "use_running_average", "use_fast_variance")
    saved = [{name: getattr(m, name) for name in settings} for _, m in norms]
    averages = _CumulativeAverage()
    forward = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)
    try:
        for _, m in norms:  # after a call, mean/var hold that batch's statistics exactly
            m.momentum, m.use_running_average, m.use_fast_variance = 0.0, False, False
        for x in _inputs(loader, device):
            _, captured = forward(x, **call_kwargs)
            for path, m in norms:
                node = captured
                for key in path:
                    node = node[key]
                outputs = node["__call__"].get_value()
                if len(outputs) != 1:
                    raise NotImplementedError(
                        f"update_bn: the BatchNorm at {'.'.join(map(str, path))} ran "
                        f"{len(outputs)} times in one forward pass; torch would average each "
                        f"call, which cannot be read back from an nnx BatchNorm"
                    )
                mean, var = m.mean.get_value(), m.var.get_value()
                averages.add(path, mean, var, outputs[0].size // mean.size)
    finally:
        for (_, m), values in zip(norms, saved, strict=True):
            for name, value in values.items():
                setattr(m, name, value)
    for path, m in norms:
        if path in averages.running:
            mean, var = averages.running[path]
            m.mean.set_value(mean.astype(m.mean.get_value().dtype))
            m.var.set_value(var.astype(m.var.get_value().dtype))
    return None


def _update_linen(
    loader: Iterable[Any], model: Any, variables: Any, device: Any, apply_kwargs: dict
) -> Any:
    from flax import linen as nn

    def forward(variables: Any, x: Any) -> dict[tuple[str, ...], list[tuple]]:
        found: dict[tuple[str, ...], list[tuple]] = {}  # each call, as torch counts

        def interceptor(next_fun, args, kwargs, context):
            module = context.module
            if isinstance(module, nn.BatchNorm) and context.method_name == "__call__":
                found.setdefault(tuple(module.scope.path), []).append(_stats(module, args[0]))
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            model.apply(variables, x, mutable=["batch_stats"], **apply_kwargs)
        return found

    run = jax.jit(forward)
    averages = _CumulativeAverage()
    for x in _inputs(loader, device):
        for path, calls in run(variables, x).items():
            for mean, var, count in calls:
                averages.add(path, mean, var, count)
    if not averages.running:
        return variables
    stats = dict(variables["batch_stats"])  # copied level by level along each path below
    for path, (mean, var) in averages.running.items():
        node = stats
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        old = dict(node[path[-1]])
        old["mean"] = mean.astype(old["mean"].dtype)
        old["var"] = var.astype(old["var"].dtype)
        node[path[-1]] = old
    return {**variables, "batch_stats": stats}
