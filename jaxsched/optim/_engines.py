"""The step engines of a stateful optimizer: how one parameter group's update runs.

Each group of an ``Optimizer`` gets one engine when the optimizer is built:

- :class:`KernelEngine`: the one-pass CPU kernels of ``optim.SGD`` / ``Adam`` / ``AdamW``
  (:mod:`._fused`), run on each device's shards of the group (``jax.shard_map`` around the FFI
  call when the leaves are sharded, so the step holds no collective), in calls of at most
  ``LEAVES_PER_CALL`` leaves, with the group's state as one flat buffer per quantity and call;
- :class:`XlaEngine`: the group's functional transform (:mod:`jaxsched.transforms`) under XLA,
  its state the transform's own (per leaf, with the leaves' shardings).

Both expose the same operations: ``init(leaves)`` a fresh placed state, ``to_tree(state)`` /
``from_tree(tree)`` between the engine's layout and the transform's (what ``opt_state`` and
``state_dict`` show), ``derive(values)`` the host-side scalars the engine reads from the
hyperparameter vector, and ``update(...)`` inside the jitted program.  ``info`` says which engine
runs the group and why (``Optimizer.engine_info()``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from .._grouped import join_hyperparams, split_hyperparams
from ..transforms._common import SplitFloat, float32_array
from ..transforms._spec import KernelAdapter, TorchSpec
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
        static_args: Collection[str],
        leaves: Sequence[jax.Array],
        template: Any,
        info: EngineInfo,
    ) -> None:
        self._factory = factory
        self._kwargs = dict(kwargs)
        self._dynamic, self._statics = split_hyperparams(kwargs, static_args)
        self._template = template
        self.info = info
        # where each state array belongs: shaped like its parameter -> its sharding
        anchor = leaves[0]

        def targets(field: Any) -> Any:
            if not _is_leaf_list(field):
                return jax.tree.map(lambda x: like(x, None, anchor), field)
            return type(field)(  # a list, or the per-parameter mode's Spread
                jax.tree.map(lambda x, p=p: like(x, p, anchor), x)
                for x, p in zip(field, leaves, strict=True)
            )

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

    def update(self, params, grads, state, hyper, derived, *, in_place, zero_decay, mask=None):
        del in_place  # XLA decides where the new parameters go
        statics = dict(self._statics)
        held = {}
        for key, value in hyper.items():
            if isinstance(value, tuple):
                held[key] = tuple(
                    None if x is None else SplitFloat(x, derived[f"{key}[{i}]"])
                    for i, x in enumerate(value)
                )
            elif float32_array(self._kwargs.get(key)):
                # torch's float32 tensor hyperparameter: a float32 value, float32 arithmetic
                held[key] = value.astype(jnp.float32)
            else:
                held[key] = SplitFloat(value, derived[f"{key}[0]"])
        if zero_decay:
            del held["weight_decay"]
            statics["weight_decay"] = self._kwargs["weight_decay"]
        tx = self._factory(**join_hyperparams(held, statics))
        if mask is None:
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state
        # per-parameter mode: a leaf without gradient keeps its exact value (and state)
        updates, state = tx.update(grads, state, params, mask=mask)
        new = optax.apply_updates(params, updates)
        return [jnp.where(m, n, p) for m, n, p in zip(mask, new, params, strict=True)], state


# Leaves per kernel call: XLA's compile time grows with the square of a custom call's operand
# count (one call over 2000 leaves: 15 s; calls of 128: 0.9 s), and a call's fixed cost is ~us.
LEAVES_PER_CALL = 128


class KernelEngine:
    """A group updated by the CPU kernels, per device shard, in calls of at most
    :data:`LEAVES_PER_CALL` leaves; each per-parameter state field is a list of flat buffers,
    one per call (:class:`ShardLayout`), the count a replicated scalar."""

    name = "kernel"

    def __init__(
        self,
        adapter: KernelAdapter,
        statics: Mapping[str, Any],
        layout: ShardLayout,
        template: Any,
        info: EngineInfo,
    ) -> None:
        self._adapter = adapter
        self._flags = adapter.flags(statics)
        self._fields = adapter.buffers(statics)
        self._layout = layout
        self._template = template
        self.info = info
        self._dtype = next(v[0].dtype for v in template if _is_leaf_list(v))
        n = len(layout.local_shapes)
        self._parts = [
            _Part(a, min(a + LEAVES_PER_CALL, n), layout.part(a, min(a + LEAVES_PER_CALL, n)))
            for a in range(0, n, LEAVES_PER_CALL)
        ]

    def derive(self, values: Mapping[str, Any]) -> dict[str, float]:
        return self._adapter.derive(values)

    # -- state layouts ----------------------------------------------------------------------

    def init(self, leaves: Sequence[jax.Array]) -> Any:
        """A fresh (zero) state, allocated with its sharding; ``leaves`` only fix the layout,
        which the engine already holds."""
        del leaves
        fields: list[Any] = []
        for v in self._template:
            if _is_leaf_list(v):
                fields.append([part.layout.flat_zeros(v[0].dtype) for part in self._parts])
            elif v is None:
                fields.append(None)
            else:
                fields.append(self._layout.scalar(np.zeros(v.shape), v.dtype))
        return type(self._template)(*fields)

    def from_tree(self, tree: Any) -> Any:
        """The transform's state (host or device arrays) -> the flat layout, placed."""
        fields: list[Any] = []
        for v, shape in zip(tree, self._template, strict=True):
            if _is_leaf_list(v):
                dtype = shape[0].dtype
                fields.append([part.join(v[part.start : part.stop], dtype) for part in self._parts])
            elif v is None:
                fields.append(None)
            else:
                fields.append(self._layout.scalar(np.asarray(v), shape.dtype))
        return type(self._template)(*fields)

    def to_tree(self, state: Any) -> Any:
        """The flat layout -> the transform's state, each leaf with its parameter's sharding."""
        out: list[Any] = []
        for v in state:
            if isinstance(v, list):
                out.append([x for part, flat in zip(self._parts, v, strict=True)
                            for x in part.split(flat)])  # fmt: skip
            else:  # the count: a copy, since the next step consumes the engine's own
                out.append(None if v is None else jnp.copy(v))
        return type(state)(*out)

    # -- the step -------------------------------------------------------------------------------

    def update(self, params, grads, state, hyper, derived, *, in_place, zero_decay, mask=None):
        del zero_decay  # the kernel skips a zero decay term at run time
        assert mask is None, "the per-parameter mode runs under XLA"
        adapter, flags, layout = self._adapter, self._flags, self._layout
        scalars = _fused.pack(adapter, adapter.scalars(hyper, derived, state), self._dtype)
        new_params: list[jax.Array] = []
        new_buffers: list[list[jax.Array]] = [[] for _ in self._fields]
        for i, part in enumerate(self._parts):
            buffers = [getattr(state, f)[i] for f in self._fields]

            def run(scalars, params, grads, buffers):
                return _fused.call(adapter, scalars, params, grads, buffers, in_place, **flags)

            if layout.mesh is not None:
                specs = list(part.layout.specs)
                flat = [PartitionSpec(tuple(layout.mesh.axis_names))] * len(buffers)
                run = jax.shard_map(
                    run,
                    mesh=layout.mesh,
                    in_specs=(PartitionSpec(), specs, specs, flat),
                    out_specs=(specs, flat),
                    check_vma=False,  # replicated leaves: every device computes the same values
                )
            p, b = run(scalars, list(params[part.start : part.stop]),
                       list(grads[part.start : part.stop]), buffers)  # fmt: skip
            new_params.extend(p)
            for column, buffer in zip(new_buffers, b, strict=True):
                column.append(buffer)
        new_state = state._replace(
            **adapter.advance(state, hyper),
            **dict(zip(self._fields, new_buffers, strict=True)),
        )
        return new_params, new_state


class _Part:
    """Leaves ``start:stop`` of a kernel group: one kernel call, one flat buffer per field."""

    def __init__(self, start: int, stop: int, layout: ShardLayout) -> None:
        self.start, self.stop, self.layout = start, stop, layout
        shapes = layout.local_shapes
        self._sizes = np.cumsum([0, *(int(np.prod(s)) for s in shapes)])
        if layout.mesh is not None:
            self._split, self._join = _shard_converters(layout)

    def split(self, flat: jax.Array) -> list[jax.Array]:
        """A flat buffer -> the leaves' arrays (with their shardings)."""
        if self.layout.mesh is not None:
            return list(self._split(flat))
        bounds = zip(self._sizes[:-1], self._sizes[1:], self.layout.local_shapes, strict=True)
        return [flat[a:b].reshape(s) for a, b, s in bounds]

    def join(self, leaves: Sequence[Any], dtype: Any) -> jax.Array:
        """The leaves' arrays (host or device) -> a flat buffer, placed."""
        layout = self.layout
        if layout.mesh is None:
            flat = jnp.concatenate([jnp.ravel(jnp.asarray(x, dtype)) for x in leaves])
            # already a fresh buffer: placed, not copied again
            return (
                flat if layout.flat_sharding is None else jax.device_put(flat, layout.flat_sharding)
            )
        mesh, specs = layout.mesh, layout.specs
        assert specs is not None
        placed = [put(x, NamedSharding(mesh, s)) for x, s in zip(leaves, specs, strict=True)]
        return self._join(placed)


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
    spec: TorchSpec,
    g: int,
    kwargs: Mapping[str, Any],
    values: Mapping[str, Any],
    leaves: Sequence[jax.Array],
    template: Any,
    slots: Mapping[str, Any],
    names: Sequence[str],
    per_parameter: Callable[..., optax.GradientTransformation] | None = None,
) -> XlaEngine | KernelEngine:
    """The engine for group ``g``: the kernels where they apply exactly, XLA otherwise;
    ``per_parameter``: the factory of the per-parameter mode (XLA: the kernels keep one step
    count per group)."""
    shards = len({d for leaf in leaves for d in leaf.sharding.device_set})
    if per_parameter is not None:
        info = EngineInfo(
            g, "xla", "per-parameter step counts (a step had parameters without gradient; the "
            "CPU kernels keep one count per group)", shards,
        )  # fmt: skip
        return XlaEngine(per_parameter, kwargs, spec.static_args, leaves, template, info)
    reason = _fused.why_not(spec.kernel, values, leaves, slots, names)
    layout: ShardLayout | str | None = None
    if reason is None:
        layout = ShardLayout.of(leaves)
        if isinstance(layout, str):
            reason = layout
    if reason is None and isinstance(layout, ShardLayout):
        assert spec.kernel is not None
        where = "on each device's shards" if layout.mesh is not None else "on one device"
        what = f"one-pass CPU kernel ({spec.kernel.entry}) {where}"
        return KernelEngine(
            spec.kernel, values, layout, template, EngineInfo(g, "kernel", what, shards)
        )
    info = EngineInfo(g, "xla", reason or "", shards)
    return XlaEngine(spec.factory, kwargs, spec.static_args, leaves, template, info)
