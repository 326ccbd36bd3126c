"""Where a stateful optimizer's arrays live: the parameters' shardings, carried over to every
state buffer, scalar and the hyperparameter vector.

The rule: a state array shaped like its parameter takes the parameter's sharding; every other
state array (step counts, scalars, Adafactor's factored statistics) is replicated over the
parameter's devices.  Arrays are placed when they are made (``jnp.zeros(..., device=...)``,
``jax.device_put`` of host values, a jitted ``init`` with ``out_shardings``), never gathered on
one device first.  Parameters that were never committed to a device (plain ``jnp`` arrays)
leave everything uncommitted, as JAX does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding, SingleDeviceSharding


def replicated(leaf: jax.Array) -> Sharding | None:
    """The sharding that replicates a scalar over ``leaf``'s devices; ``None`` when ``leaf`` is
    not committed to any device (then neither is the scalar)."""
    if not getattr(leaf, "committed", False):
        return None
    sharding = leaf.sharding
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec())
    devices: list[Any] = sorted(sharding.device_set, key=lambda d: d.id)
    if len(devices) == 1:
        return SingleDeviceSharding(devices[0])
    return NamedSharding(Mesh(np.array(devices), ("devices",)), PartitionSpec())


def like(state_leaf: Any, param: jax.Array | None, anchor: jax.Array) -> Sharding | None:
    """Where a state array belongs: ``param``'s sharding when it has ``param``'s shape; split
    like ``param`` along the dimensions it shares with it when it has ``param``'s rank (a
    factored moment: Adafactor's row statistics of a row-sharded matrix stay row-sharded, as
    the step computes them); else replicated over ``anchor``'s devices (``anchor``: a parameter
    of the same group).  A stack of arrays shaped like ``param`` (``(k, *param.shape)``: LBFGS's
    history) is split like ``param`` along every dimension but the first."""
    committed = param is not None and getattr(param, "committed", False)
    if committed and param is not None:
        shape, sharding = tuple(state_leaf.shape), param.sharding
        if shape == tuple(param.shape):
            return sharding
        if isinstance(sharding, NamedSharding) and shape[1:] == tuple(param.shape):
            spec = tuple(sharding.spec) + (None,) * (param.ndim - len(sharding.spec))
            return NamedSharding(sharding.mesh, PartitionSpec(None, *spec))
        if isinstance(sharding, NamedSharding) and len(shape) == param.ndim:
            spec = tuple(sharding.spec) + (None,) * (param.ndim - len(sharding.spec))
            kept = [
                axes if n == m else None
                for axes, n, m in zip(spec, shape, param.shape, strict=True)
            ]
            return NamedSharding(sharding.mesh, PartitionSpec(*kept))
    return replicated(anchor)


def put(value: Any, sharding: Sharding | None) -> jax.Array | None:
    """``value`` (host or device) as a new device array with ``sharding`` (uncommitted for
    ``None``).  Always a fresh buffer: the optimizer donates its state to XLA."""
    if value is None:
        return None
    if sharding is None:
        return jnp.array(value, copy=True)
    if isinstance(value, jax.Array) and value.sharding == sharding:
        return jnp.array(value, copy=True)
    return jax.device_put(value, sharding)


def place_tree(tree: Any, targets: Any) -> Any:
    """Every array of ``tree`` put on its sharding in ``targets`` (same structure; ``None``
    target: uncommitted)."""
    return jax.tree.map(put, tree, targets, is_leaf=lambda x: x is None)


# -- the kernels' per-shard layout ----------------------------------------------------------------


@dataclass(frozen=True)
class ShardLayout:
    """How a parameter group's leaves are split over devices, for the CPU kernels that run on
    each device's shards.

    ``mesh`` is ``None`` for a group on one device; otherwise every leaf is sharded over that
    mesh with ``specs[i]`` and each device holds a block of ``local_shapes[i]``.  The kernels'
    flat state buffers are one per quantity: ``shards * local_total`` elements, sharded over all
    mesh axes, device ``d``'s block holding its shards of the group's leaves end to end.
    """

    mesh: Mesh | None
    specs: tuple[PartitionSpec, ...] | None
    local_shapes: tuple[tuple[int, ...], ...]
    flat_sharding: Sharding | None
    scalar_sharding: Sharding | None

    @property
    def shards(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    @property
    def local_total(self) -> int:
        return sum(math.prod(s) for s in self.local_shapes)

    def part(self, start: int, stop: int) -> ShardLayout:
        """The layout of leaves ``start:stop`` alone (same mesh and placement)."""
        specs = None if self.specs is None else self.specs[start:stop]
        return dataclasses.replace(self, specs=specs, local_shapes=self.local_shapes[start:stop])

    def flat_zeros(self, dtype: Any) -> jax.Array:
        """A zero flat buffer, allocated directly with its sharding."""
        n = self.shards * self.local_total
        if self.flat_sharding is None:
            return jnp.zeros(n, dtype)
        return jnp.zeros(n, dtype, device=self.flat_sharding)

    def scalar(self, value: Any, dtype: Any) -> jax.Array:
        placed = put(np.asarray(value, dtype), self.scalar_sharding)
        assert placed is not None
        return placed

    @classmethod
    def of(cls, leaves: Sequence[jax.Array]) -> ShardLayout | str:
        """The layout of ``leaves``, or why the kernels cannot run on their shards."""
        all_shardings = [leaf.sharding for leaf in leaves]
        shapes = tuple(tuple(leaf.shape) for leaf in leaves)
        if all(isinstance(s, SingleDeviceSharding) for s in all_shardings):
            devices = {next(iter(s.device_set)) for s in all_shardings}
            committed = [leaf for leaf in leaves if leaf.committed]
            if len(devices) > 1 and committed:
                return "the group's leaves are committed to different devices"
            sharding = committed[0].sharding if committed else None
            return cls(None, None, shapes, sharding, sharding)
        shardings = [s for s in all_shardings if isinstance(s, NamedSharding)]
        if len(shardings) != len(all_shardings):
            kinds = sorted({type(s).__name__ for s in all_shardings})
            return f"the group's leaves have shardings the kernels do not split: {kinds}"
        mesh = shardings[0].mesh
        if not isinstance(mesh, Mesh):
            return f"the group's leaves are sharded over an abstract mesh ({mesh})"
        if any(s.mesh != mesh for s in shardings):
            return "the group's leaves are sharded over different meshes"
        local = []
        for leaf, sharding in zip(leaves, shardings, strict=True):
            block = _local_shape(leaf.shape, sharding.spec, mesh)
            if block is None:
                return (
                    f"a leaf of shape {tuple(leaf.shape)} does not split evenly under "
                    f"{sharding.spec} over mesh {dict(mesh.shape)}"
                )
            local.append(block)
        axes = tuple(mesh.axis_names)
        return cls(
            mesh,
            tuple(s.spec for s in shardings),
            tuple(local),
            NamedSharding(mesh, PartitionSpec(axes)),
            NamedSharding(mesh, PartitionSpec()),
        )


def _local_shape(shape: Sequence[int], spec: PartitionSpec, mesh: Mesh) -> tuple[int, ...] | None:
    out = []
    for i, size in enumerate(shape):
        entry = spec[i] if i < len(spec) else None
        names = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        parts = math.prod(mesh.shape[name] for name in names)
        if size % parts:
            return None
        out.append(size // parts)
    return tuple(out)
