r"""Weight averaging (SWA, EMA) as ``torch.optim.swa_utils``: the averaging functions, a
functional average of a parameter tree, and :class:`AveragedModel` over it.

The update of an average :math:`\bar w` with the current weights :math:`w`, after :math:`n`
averages (the first call copies :math:`w`):

.. math::
    \text{SWA: } \bar w \leftarrow \bar w + \frac{w - \bar w}{n + 1}, \qquad
    \text{EMA: } \bar w \leftarrow \beta\,\bar w + (1 - \beta)\,w

torch's averaging functions update in place; here they return the new values:
``avg_fn(averaged, current, n_averaged) -> new`` per array and
``multi_avg_fn(averaged_list, current_list, n_averaged) -> new_list`` per list of arrays of one
dtype.  Each reproduces torch's CPU arithmetic: ``get_*_multi_avg_fn`` are torch's
``_foreach_lerp_`` (a fused multiply-add, whose branch depends on the weight); the SWA list
weight is ``1 / (n + 1)`` rounded to float32, as torch computes it from a tensor.

Differences from PyTorch: torch's default (no function given) on a GPU uses the ``lerp`` form,
on the CPU the per-array SWA form; here always the latter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

AvgFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
MultiAvgFn = Callable[[Sequence[jax.Array], Sequence[jax.Array], jax.Array], list[jax.Array]]


def _check_decay(decay: float) -> None:
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range."
        )


def _lerp(start: jax.Array, end: jax.Array, weight: Any) -> jax.Array:
    """torch's ``lerp`` (CPU): ``start + w (end - start)`` for ``|w| < 0.5``, else
    ``end - (end - start)(1 - w)``, each a fused multiply-add (XLA's CPU and GPU backends
    contract these expressions, as torch's kernel does explicitly)."""
    weight = jnp.asarray(weight, start.dtype)
    diff = end - start
    return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def _fence(x: jax.Array, zero: jax.Array) -> jax.Array:
    """``x`` rounded on its own: XOR with a zero known only at run time, which keeps XLA from
    fusing the product into a following sum (a multiply-add rounds once, torch twice)."""
    bits = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[x.dtype.itemsize]
    return lax.bitcast_convert_type(lax.bitcast_convert_type(x, bits) ^ zero.astype(bits), x.dtype)


def get_ema_multi_avg_fn(decay: float = 0.999) -> MultiAvgFn:
    r"""EMA over a list of arrays: :math:`\bar w \leftarrow \text{lerp}(\bar w, w, 1 - \beta)`
    for floats, ``(w̄ β + w (1 - β))`` truncated for integers, as torch's."""
    _check_decay(decay)

    def ema_update(ema: Sequence[jax.Array], current: Sequence[jax.Array], _: Any) -> list:
        if jnp.issubdtype(ema[0].dtype, jnp.inexact):
            return [_lerp(e, c, 1 - decay) for e, c in zip(ema, current, strict=True)]
        return [
            (e * decay + c * (1 - decay)).astype(e.dtype) for e, c in zip(ema, current, strict=True)
        ]

    return ema_update


def get_swa_multi_avg_fn() -> MultiAvgFn:
    r"""SWA over a list of float arrays: :math:`\text{lerp}(\bar w, w, 1/(n+1))` with the
    weight rounded to float32 (torch: ``1 / (n_averaged + 1)`` of a tensor)."""

    def swa_update(averaged: Sequence[jax.Array], current: Sequence[jax.Array], n: Any) -> list:
        if not jnp.issubdtype(averaged[0].dtype, jnp.inexact):
            raise RuntimeError("Integer division with addcdiv_ is no longer supported")
        weight = (1 / (jnp.asarray(n) + 1).astype(jnp.float32)).astype(jnp.float32)
        return [_lerp(a, c, weight) for a, c in zip(averaged, current, strict=True)]

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> AvgFn:
    r"""EMA of one array: :math:`\beta\,\bar w + (1 - \beta)\,w`, both products rounded."""
    _check_decay(decay)

    def ema_update(ema: jax.Array, current: jax.Array, n: Any) -> jax.Array:
        zero = jnp.minimum(jnp.asarray(n), 0)  # 0, but not to the compiler
        if not jnp.issubdtype(jnp.result_type(ema, float), jnp.inexact):
            return decay * ema + (1 - decay) * current
        left, right = decay * ema, (1 - decay) * current
        return _fence(left, zero) + _fence(right, zero)

    return ema_update


def get_swa_avg_fn() -> AvgFn:
    r"""SWA of one array: :math:`\bar w + (w - \bar w) / (n + 1)`, a true division (XLA turns
    a division by a broadcast scalar into a product with its reciprocal, one rounding more:
    the divisor is materialised behind an optimisation barrier)."""

    def swa_update(averaged: jax.Array, current: jax.Array, n: Any) -> jax.Array:
        diff = current - averaged
        dtype = diff.dtype if jnp.issubdtype(diff.dtype, jnp.inexact) else jnp.result_type(float)
        count = (jnp.asarray(n) + 1).astype(dtype)
        divisor = lax.optimization_barrier(jnp.broadcast_to(count, diff.shape))
        return averaged + diff.astype(dtype) / divisor

    return swa_update


class AverageState(NamedTuple):
    """The running average of a tree and how many trees it has taken (torch's
    ``n_averaged``)."""

    averaged: Any
    n_averaged: jax.Array


class WeightAverage(NamedTuple):
    """``init(params) -> AverageState`` and ``update(state, params) -> AverageState``, pure
    and jit-friendly (:func:`weight_average`)."""

    init: Callable[[Any], AverageState]
    update: Callable[[AverageState, Any], AverageState]


def weight_average(
    avg_fn: AvgFn | None = None, multi_avg_fn: MultiAvgFn | None = None
) -> WeightAverage:
    """The functional form of :class:`AveragedModel`'s average: ``update`` takes the current
    parameters; the first update copies them, later ones apply ``avg_fn`` to each array or
    ``multi_avg_fn`` to the arrays of each dtype (neither: SWA, :func:`get_swa_avg_fn`).  The
    result of each function is cast back to the array's dtype (torch writes it in place)."""
    if avg_fn is not None and multi_avg_fn is not None:
        raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
    if avg_fn is None and multi_avg_fn is None:
        avg_fn = get_swa_avg_fn()

    def init(params: Any) -> AverageState:
        return AverageState(jax.tree.map(jnp.copy, params), jnp.zeros((), int))

    def update(state: AverageState, params: Any) -> AverageState:
        old, treedef = jax.tree.flatten(state.averaged)
        new = treedef.flatten_up_to(params)
        n = state.n_averaged
        if multi_avg_fn is not None:
            out: list[Any] = list(old)
            for dtype in dict.fromkeys(x.dtype for x in old):
                idx = [i for i, x in enumerate(old) if x.dtype == dtype]
                values = multi_avg_fn([old[i] for i in idx], [new[i] for i in idx], n)
                for i, v in zip(idx, values, strict=True):
                    out[i] = v
        else:
            assert avg_fn is not None
            out = [avg_fn(a, c, n) for a, c in zip(old, new, strict=True)]
        averaged = [
            jnp.where(n == 0, jnp.asarray(c, a.dtype), jnp.asarray(v).astype(a.dtype))
            for a, c, v in zip(old, new, out, strict=True)
        ]
        return AverageState(treedef.unflatten(averaged), n + 1)

    return WeightAverage(init, update)


def _is_variables(tree: Any) -> bool:
    """A flax linen variables dict: its ``"params"`` collection is the parameters, the other
    collections (``batch_stats``) torch's buffers."""
    return isinstance(tree, dict) and "params" in tree


class AveragedModel:
    """``torch.optim.swa_utils.AveragedModel(model, device=None, avg_fn=None,
    multi_avg_fn=None, use_buffers=False)`` over a parameter tree.

    ``model`` is a pytree of arrays (the parameters), or a flax linen variables dict whose
    ``"params"`` are the parameters and whose other collections (``batch_stats``) are torch's
    buffers: averaged too with ``use_buffers=True``, else copied from the model at each update
    (torch keeps them in sync).  ``module`` holds the average (a copy of ``model`` at first, on
    ``device`` if given: a device or sharding, else where ``model`` is); ``n_averaged`` counts
    the updates.  ``update_parameters(model)`` runs one jitted program.  ``avg_fn`` /
    ``multi_avg_fn`` return the new values (see :mod:`jaxsched.optim.swa_utils`).
    """

    def __init__(
        self,
        model: Any,
        device: Any = None,
        avg_fn: AvgFn | None = None,
        multi_avg_fn: MultiAvgFn | None = None,
        use_buffers: bool = False,
    ) -> None:
        self._average = weight_average(avg_fn, multi_avg_fn)
        self.avg_fn, self.multi_avg_fn, self.use_buffers = avg_fn, multi_avg_fn, use_buffers
        self.device = device
        module = jax.tree.map(jnp.copy, model)
        count = jnp.zeros((), int)
        if device is not None:
            module, count = jax.device_put((module, count), device)
        self.module = module
        self.n_averaged = count
        self._update = jax.jit(self._average.update)

    def _averaged_part(self, tree: Any) -> Any:
        return tree["params"] if _is_variables(tree) and not self.use_buffers else tree

    def update_parameters(self, model: Any) -> None:
        """Average ``model`` (same structure as ``module``) into ``module``."""
        if self.device is not None:
            model = jax.device_put(model, self.device)
        state = AverageState(self._averaged_part(self.module), self.n_averaged)
        new = self._update(state, self._averaged_part(model))
        if _is_variables(self.module) and not self.use_buffers:
            buffers = {k: jax.tree.map(jnp.copy, v) for k, v in model.items() if k != "params"}
            self.module = {**self.module, **buffers, "params": new.averaged}
        else:
            self.module = new.averaged
        self.n_averaged = new.n_averaged

    def state_dict(self) -> dict[str, Any]:
        """``{"module": <the averaged tree, as numpy>, "n_averaged": <int>}``."""
        return {"module": jax.device_get(self.module), "n_averaged": int(self.n_averaged)}

    def load_state_dict(self, state_dict: Any) -> None:
        """Load :meth:`state_dict`'s output; arrays go where the current ``module``'s are."""
        module = state_dict["module"]
        if jax.tree.structure(module) != jax.tree.structure(self.module):
            raise ValueError("loaded state dict's module does not match this AveragedModel's")
        self.module = jax.tree.map(
            lambda new, old: jax.device_put(jnp.asarray(new, old.dtype), old.sharding),
            module, self.module,
        )  # fmt: skip
        self.n_averaged = jax.device_put(
            jnp.asarray(int(state_dict["n_averaged"]), self.n_averaged.dtype),
            self.n_averaged.sharding,
        )
