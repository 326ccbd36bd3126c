"""The step engines of a stateful optimizer: how one parameter group's update runs.

Each group of an ``Optimizer`` gets one engine when the optimizer is built:

- :class:`KernelEngine`: the one-pass CPU kernels of ``optim.SGD`` / ``Adam`` / ``AdamW``
  (:mod:`._fused`), run on each device's shards of the group (``jax.shard_map`` around the FFI
  call when the leaves are sharded, so the step holds no collective), with the group's state as
  one flat buffer per quantity and device;
- :class:`XlaEngine`: the group's functional transform (:mod:`jaxsched.transforms`) under XLA,
  its state the transform's own (per leaf, with the leaves' shardings).

Both expose the same four operations: ``init()`` a fresh placed state, ``to_tree(state)`` /
``from_tree(tree)`` between the engine's layout and the transform's (what ``opt_state`` and
``state_dict`` show), and ``update(...)`` inside the jitted program.  ``info`` says which engine
runs the group and why (``Optimizer.engine_info()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from .._grouped import join_hyperparams, split_hyperparams
from ..transforms._common import SplitFloat
from . import _fused
from ._placement import ShardLayout, like, place_tree, put


class EngineInfo(NamedTuple):
    """Which engine runs parameter group ``group`` and why."""

    group: int
    engine: str  # "kernel" or "xla"
    reason: str
    shards: int  # devices the group's leaves are spread over


def _is_leaf_list(value: Any) -> bool:
    return isinstance(value, list)


class XlaEngine:
    """A group updated by its transform, ``factory(**values)``, under XLA."""

    name = "xla"

    def __init__(
        self,
        factory: Callable[..., optax.GradientTransformation],
        kwargs: Mapping[str, Any],
        leaves: Sequence[jax.Array],
        template: Any,
        info: EngineInfo,
    ) -> None:
        self._factory = factory
        self._kwargs = dict(kwargs)
        self._dynamic, self._statics = split_hyperparams(kwargs)
        self._template = template
        self.info = info
        # where each state array belongs: shaped like its parameter -> its sharding
        anchor = leaves[0]

        def targets(field: Any) -> Any:
            if not _is_leaf_list(field):
                return jax.tree.map(lambda x: like(x, None, anchor), field)
            return [
                jax.tree.map(lambda x, p=p: like(x, p, anchor), x)
                for x, p in zip(field, leaves, strict=True)
            ]

        self._targets = type(template)(*(targets(v) for v in template))
        self._vector_dtype = np.dtype(jnp.result_type(float))
        committed = [getattr(leaf, "committed", False) for leaf in leaves]
        self._placement = "all" if all(committed) else "some" if any(committed) else "none"

    def derive(self, values: Mapping[str, Any]) -> dict[str, float]:
        """What the vector's rounding of each numeric value lost (``value - hi``, in double):
        the update sees :class:`SplitFloat` hyperparameters, so ``1 - beta2`` is computed as
        torch computes it from the Python float."""
        out = {}
        for key, value in self._dynamic.items():
            items = value if isinstance(value, tuple) else (value,)
            held = values[key] if isinstance(value, tuple) else (values[key],)
            for i, (x, v) in enumerate(zip(items, held, strict=True)):
                if x is not None:
                    out[f"{key}[{i}]"] = float(v) - float(np.asarray(v, self._vector_dtype))
        return out

    def init(self, leaves: Sequence[jax.Array]) -> Any:
        """A fresh state for the group's ``leaves``, placed."""
        tx = self._factory(**join_hyperparams(self._dynamic, self._statics))
        if self._placement == "none":  # uncommitted leaves, uncommitted state
            return tx.init(list(leaves))
        if self._placement == "some":
            return place_tree(tx.init(list(leaves)), self._targets)
        # Allocated in place on the devices (never whole on one device first).
        return jax.jit(tx.init, out_shardings=self._targets)(list(leaves))

    def from_tree(self, tree: Any) -> Any:
        return place_tree(tree, self._targets)

    def to_tree(self, state: Any) -> Any:
        """A copy (one program): arrays handed out must survive the next step, which consumes
        the engine's own."""
        return _copy(state)

    def update(self, params, grads, state, hyper, derived, *, in_place, zero_decay):
        del in_place  # XLA decides where the new parameters go
        statics = dict(self._statics)
        held = {}
        for key, value in hyper.items():
            if isinstance(value, tuple):
                held[key] = tuple(
                    None if x is None else SplitFloat(x, derived[f"{key}[{i}]"])
                    for i, x in enumerate(value)
                )
            else:
                held[key] = SplitFloat(value, derived[f"{key}[0]"])
        if zero_decay:
            del held["weight_decay"]
            statics["weight_decay"] = self._kwargs["weight_decay"]
        tx = self._factory(**join_hyperparams(held, statics))
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state


class KernelEngine:
    """A group updated by the CPU kernels, per device shard; its per-parameter state fields are
    flat buffers (:class:`ShardLayout`), the count a replicated scalar."""

    name = "kernel"

    def __init__(
        self, kind: str, statics: Mapping[str, Any], layout: ShardLayout, template: Any,
        info: EngineInfo,
    ) -> None:  # fmt: skip
        self._kind = kind
        self._flags = _fused.attributes(kind, statics)
        self._fields = _fused.buffer_fields(kind, statics)
        self._layout = layout
        self._template = template
        self.info = info
        self._dtype = next(v[0].dtype for v in template if _is_leaf_list(v))
        if layout.mesh is not None:
            self._split, self._join = _shard_converters(layout)

    def derive(self, values: Mapping[str, Any]) -> dict[str, float]:
        return _fused.derive(self._kind)(values)

    # -- state layouts ----------------------------------------------------------------------

    def init(self, leaves: Sequence[jax.Array]) -> Any:
        """A fresh (zero) state, allocated with its sharding; ``leaves`` only fix the layout,
        which the engine already holds."""
        del leaves
        layout = self._layout
        return type(self._template)(
            *(
                layout.flat_zeros(v[0].dtype)
                if _is_leaf_list(v)
                else None
                if v is None
                else layout.scalar(np.zeros(v.shape), v.dtype)
                for v in self._template
            )
        )

    def from_tree(self, tree: Any) -> Any:
        """The transform's state (host or device arrays) -> the flat layout, placed."""
        layout = self._layout
        fields = []
        for v, shape in zip(tree, self._template, strict=True):
            if _is_leaf_list(v):
                if layout.mesh is None:
                    flat = jnp.concatenate([jnp.ravel(jnp.asarray(x, shape[0].dtype)) for x in v])
                    fields.append(place_tree(flat, layout.flat_sharding))
                else:
                    mesh = layout.mesh
                    placed = [
                        put(x, NamedSharding(mesh, spec))
                        for x, spec in zip(v, layout.specs, strict=True)
                    ]
                    fields.append(self._join(placed))
            else:
                fields.append(None if v is None else layout.scalar(np.asarray(v), shape.dtype))
        return type(self._template)(*fields)

    def to_tree(self, state: Any) -> Any:
        """The flat layout -> the transform's state, each leaf with its parameter's sharding."""
        out = []
        for v in state:
            if v is not None and v.ndim == 1:
                if self._layout.mesh is None:
                    sizes = np.cumsum([0, *(int(np.prod(s)) for s in self._layout.local_shapes)])
                    out.append([
                        v[a:b].reshape(s)
                        for a, b, s in zip(sizes[:-1], sizes[1:], self._layout.local_shapes,
                                           strict=True)
                    ])  # fmt: skip
                else:
                    out.append(list(self._split(v)))
            else:  # the count: a copy, since the next step consumes the engine's own
                out.append(None if v is None else jnp.copy(v))
        return type(state)(*out)

    # -- the step -------------------------------------------------------------------------------

    def update(self, params, grads, state, hyper, derived, *, in_place, zero_decay):
        del zero_decay  # the kernel skips a zero decay term at run time
        kind, flags, layout = self._kind, self._flags, self._layout
        scalars = _fused.scalars(kind, hyper, derived, state.count, self._dtype)
        buffers = [getattr(state, f) for f in self._fields]

        def run(scalars, params, grads, buffers):
            return _fused.call(kind, scalars, params, grads, buffers, in_place, **flags)

        if layout.mesh is not None:
            specs = list(layout.specs)
            flat = [PartitionSpec(tuple(layout.mesh.axis_names))] * len(buffers)
            run = jax.shard_map(
                run,
                mesh=layout.mesh,
                in_specs=(PartitionSpec(), specs, specs, flat),
                out_specs=(specs, flat),
                check_vma=False,  # replicated leaves: every device computes the same values
            )
        new_params, new_buffers = run(scalars, list(params), list(grads), buffers)
        new_state = state._replace(count=state.count + 1, **dict(zip(self._fields, new_buffers,
                                                                     strict=True)))  # fmt: skip
        return new_params, new_state


@jax.jit
def _copy(tree: Any) -> Any:
    return jax.tree.map(jnp.copy, tree)


def _shard_converters(layout: ShardLayout) -> tuple[Callable, Callable]:
    """Jitted ``split(flat) -> leaves`` and ``join(leaves) -> flat`` that move each device's
    block to and from its shards of the leaves, without any communication."""
    assert layout.mesh is not None and layout.specs is not None
    shapes = layout.local_shapes
    sizes = np.cumsum([0, *(int(np.prod(s)) for s in shapes)])
    flat = PartitionSpec(tuple(layout.mesh.axis_names))
    specs = list(layout.specs)

    def split(block):
        bounds = zip(sizes[:-1], sizes[1:], shapes, strict=True)
        return [block[a:b].reshape(s) for a, b, s in bounds]

    def join(blocks):
        return jnp.concatenate([jnp.ravel(b) for b in blocks])

    mesh = layout.mesh
    return (
        jax.jit(jax.shard_map(split, mesh=mesh, in_specs=flat, out_specs=specs, check_vma=False)),
        jax.jit(jax.shard_map(join, mesh=mesh, in_specs=(specs,), out_specs=flat,
                              check_vma=False)),
    )  # fmt: skip


def choose(
    factory: Callable[..., optax.GradientTransformation],
    g: int,
    kwargs: Mapping[str, Any],
    values: Mapping[str, Any],
    leaves: Sequence[jax.Array],
    template: Any,
    hyper_layout: Mapping[str, Any],
    names: Sequence[str],
) -> XlaEngine | KernelEngine:
    """The engine for group ``g``: the kernels where they apply exactly, XLA otherwise."""
    reason = _fused.why_not(factory, values, leaves, hyper_layout, names)
    layout: ShardLayout | str | None = None
    if reason is None:
        layout = ShardLayout.of(leaves)
        if isinstance(layout, str):
            reason = layout
    shards = len({d for leaf in leaves for d in leaf.sharding.device_set})
    if reason is None and isinstance(layout, ShardLayout):
        kind = _fused.kind_of(factory)
        assert kind is not None
        where = "on each device's shards" if layout.mesh is not None else "on one device"
        info = EngineInfo(g, "kernel", f"one-pass CPU kernel ({kind}) {where}", shards)
        return KernelEngine(kind, values, layout, template, info)
    return XlaEngine(factory, kwargs, leaves, template, EngineInfo(g, "xla", reason or "", shards))
