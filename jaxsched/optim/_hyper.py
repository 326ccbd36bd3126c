"""The hyperparameter vector: every group's numeric hyperparameters as one small array, the
last argument of a stateful optimizer's jitted programs.

Writing ``param_groups[g]["lr"]`` changes one host slot; the vector is uploaded (to the
parameters' devices, replicated) at the next step and the device copy that step returns is
reused until the next write, so a value change never recompiles and an unchanged one costs no
transfer.  Next to the raw values the vector holds scalars *derived* from them on the host in
double precision (``1 - beta2``, ``log(beta1)``, ``1 - lr * weight_decay``, ...), as torch
computes them from Python floats: derived on the device from a float32 ``beta2`` they would be
off by the rounding of ``beta2`` (1.3e-5 relative for ``1 - 0.999``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Sharding

# The slots: {group: {name: None (a number) or a mask (a tuple whose True elements are
# numbers)}}, which values of each group the vector holds, in order.
Slots = Mapping[int, Mapping[str, Any]]
Derive = Callable[[Mapping[str, Any]], dict[str, float]]


class HyperVector:
    """Packs ``values[g][name]`` (the live host mirror of ``param_groups``) in ``slots``
    order, each group's derived scalars after its raw values, and unpacks a (traced) vector
    into ``({g: {name: scalar or tuple}}, {g: {derived name: scalar}})``."""

    def __init__(
        self,
        slots: Slots,
        values: Sequence[Mapping[str, Any]],
        derive: Sequence[Derive | None],
        sharding: Sharding | None,
    ) -> None:
        self.slots = {g: dict(names) for g, names in slots.items()}
        self._values = values
        self._derive = list(derive)
        self._sharding = sharding
        self._dtype = np.dtype(jnp.result_type(float))  # looked up once: it is slow
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the host vector, and the slot of every key, from the group values (all or
        nothing: a value that is not a number raises and leaves the vector as it was)."""
        host: list[float] = []
        slots: dict[tuple[int, str], tuple[int, Any]] = {}
        derived_at: dict[int, tuple[int, tuple[str, ...]]] = {}
        for g, names in self.slots.items():
            values = self._values[g]
            for key, mask in names.items():
                slots[(g, key)] = (len(host), mask)
                value = values[key]
                if mask is None:
                    host.append(float(value))
                elif not isinstance(value, (tuple, list)) or len(value) != len(mask):
                    raise ValueError(
                        f"param_groups[{g}][{key!r}] must hold {len(mask)} values, got {value!r}"
                    )
                else:
                    host.extend(float(v) for v, m in zip(value, mask, strict=True) if m)
            derived = self._derived(g)
            derived_at[g] = (len(host), tuple(derived))
            host.extend(derived.values())
        self._host = np.asarray(host, self._dtype)
        self._slots, self._derived_at = slots, derived_at
        self._device: Any = None

    def _derived(self, g: int) -> dict[str, float]:
        derive = self._derive[g]
        return {} if derive is None else derive(self._values[g])

    def write(self, g: int, key: str, value: Any) -> bool:
        """Put a number written over a number into its slot (and the group's derived scalars);
        ``False`` when the write changes the slots (a flag, a tuple, a schedule)."""
        slot = self._slots.get((g, key))
        if slot is None or slot[1] is not None or type(value) not in (float, int):
            return False
        if self._host[slot[0]] != value:  # rewriting the same value costs nothing
            self._host[slot[0]] = value
            start, names = self._derived_at[g]
            if names:
                derived = self._derived(g)
                self._host[start : start + len(names)] = [derived[n] for n in names]
            self._device = None
        return True

    def current(self) -> jax.Array | np.ndarray:
        """The vector to pass: the device copy the last program returned, or a fresh upload
        after a write (placed on the parameters' devices, so no program recompiles)."""
        if self._device is None:
            host = self._host.copy()  # the upload must not see later writes
            self._device = host if self._sharding is None else jax.device_put(host, self._sharding)
        return self._device

    def returned(self, vector: jax.Array) -> None:
        """Keep the device copy a program returned (unchanged values: reused next step)."""
        self._device = vector

    def unpack(self, vector: Any) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        hyper: dict[int, dict[str, Any]] = {}
        derived: dict[int, dict[str, Any]] = {}
        for g, names in self.slots.items():
            hyper[g] = {}
            for key, mask in names.items():
                i = self._slots[(g, key)][0]
                if mask is None:
                    hyper[g][key] = vector[i]
                else:
                    items = []
                    for m in mask:
                        items.append(vector[i] if m else None)
                        i += int(m)
                    hyper[g][key] = tuple(items)
            start, keys = self._derived_at[g]
            derived[g] = {name: vector[start + j] for j, name in enumerate(keys)}
        return hyper, derived
