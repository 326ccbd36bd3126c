"""The CPU kernels of ``optim.SGD``, ``optim.Adam`` and ``optim.AdamW``: one pass over memory.

XLA:CPU has no multi-output fusion: written in ``jnp``, an Adam step becomes three loops per
leaf (first moment, second moment, then the parameter from both), about ten array passes where
one loop needs seven, and every leaf is its own loop.  The kernels in ``csrc/fused_cpu.cc``
(called through XLA's typed FFI, inside the jitted step) update a parameter group's leaves in
one multithreaded loop, with the group's state held as one flat buffer per quantity and updated
in place; the parameters too (``opt.step``), or into new buffers where other operations read
them in the same program (a train step: XLA would copy them first otherwise).  This module is
the kernel side of one call: loading and registering the library, whether a group may use it
(:func:`why_not`), the scalars and flags it takes; :mod:`._engines` runs it per group (and per
device shard).

Exactness: the kernels compute the elementwise part of :func:`jaxsched.sgd` /
:func:`jaxsched.adam` operation for operation in the parameter dtype, each operation rounded
(no FMA contraction, as torch's own kernels).  The scalars that cancel when rounded first
(``1 - beta2``, ``log(beta1)``, ``1 - lr * weight_decay``, ``1 - dampening``) are derived on the
host from the Python floats in double (:func:`derive`) and rounded once, as torch does; those
that depend on the step (bias corrections) are computed on the device with the transforms'
formulas.  XLA:CPU contracts multiply-adds into FMAs where the CPU has them, so the kernel and
XLA engines agree to rounding, not bit for bit; both are tested against torch at the
contract's tolerances.

A group takes the kernels when they were built and load, the default backend is the CPU, its
leaves share one dtype (float32 or float64) and one mesh (or one device), every numeric
hyperparameter is a number, and it does not set ``fused=False``; otherwise it runs the
transform under XLA.  ``JAXSCHED_FUSED=0`` in the environment turns the kernels off.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..transforms._common import cast, float32_array
from ..transforms._registry import kernel_entries
from ..transforms._sgd import SGD_KERNEL
from ..transforms._spec import KernelAdapter

_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
# csrc/fused_cpu.cc's jaxsched_kernels_version(): 2 = SGD's "no buffer yet" scalar and momentum
# flag; 3 = named scalars (the library lists them; checked at load)
KERNELS_VERSION = 3
# The kernels' scalar structs (SgdScalars / AdamScalars), as the adapters beside the maths name
# their fields; the library must list the same names in the same order (checked at load).
SCALAR_NAMES = kernel_entries()
_TARGETS = [f"jaxsched_{k}_{d}" for k in SCALAR_NAMES for d in ("f32", "f64")]


def library_path() -> str:
    """Where the install put the kernel library (a plain shared library, not a Python module)."""
    suffix = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "libjaxsched_kernels" + suffix)


def kernels_available() -> bool:
    """True when the compiled kernels load, register with XLA and pass a smoke test."""
    return unavailable() is None


@functools.cache
def unavailable() -> str | None:
    """Why the kernels cannot run here, or ``None`` when they can."""
    if os.environ.get("JAXSCHED_FUSED", "1") == "0":
        return "JAXSCHED_FUSED=0 in the environment"
    if jax.default_backend() != "cpu":
        return f"the default backend is {jax.default_backend()}, the kernels are CPU only"
    try:
        origin = library_path()
        if not os.path.exists(origin):
            return f"the kernel library was not built at install (no {origin})"
        library = ctypes.CDLL(origin)
        stale = version_problem(library, origin)
        if stale is not None:
            return stale
        for name in _TARGETS:
            capsule = jax.ffi.pycapsule(getattr(library, name))
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
        return None if _smoke_test() else "the kernel library failed its smoke test"
    except Exception as err:  # built against an incompatible jaxlib, no FFI, ...: XLA alone
        return f"the kernel library did not load: {err}"


def version_problem(library: Any, origin: str) -> str | None:
    """Why ``library`` (a loaded kernel library) is not the one this jaxsched was written for,
    or ``None``: its ``jaxsched_kernels_version()`` must equal :data:`KERNELS_VERSION`."""
    version = getattr(library, "jaxsched_kernels_version", None)
    if version is not None:
        version.restype = ctypes.c_int64
        version = int(version())
    if version != KERNELS_VERSION:
        return (
            f"the kernel library at {origin} is version {version}, this jaxsched needs "
            f"{KERNELS_VERSION} (a stale build: reinstall jaxsched)"
        )
    for kind, names in SCALAR_NAMES.items():
        listed = getattr(library, f"jaxsched_{kind}_scalar_names")
        listed.restype = ctypes.c_char_p
        if listed().decode() != ",".join(names):
            return (
                f"the kernel library at {origin} reads the {kind} scalars as "
                f"{listed().decode()!r}, this jaxsched packs {','.join(names)!r}"
            )
    return None


@functools.cache
def _warn_once(reason: str) -> None:
    """Say once per process why SGD/Adam/AdamW run on XLA, unless the user chose it."""
    if reason.startswith("JAXSCHED_FUSED=0") or reason.startswith("the default backend"):
        return
    warnings.warn(
        f"jaxsched: the CPU kernels are not used ({reason}); optim.SGD, Adam and AdamW run "
        f"their transforms under XLA instead (same numbers, slower)",
        RuntimeWarning,
        stacklevel=4,
    )


def _smoke_test() -> bool:
    p, g = jnp.arange(4.0, dtype=jnp.float32), jnp.ones(4, jnp.float32)
    scalars = pack(  # the first SGD step with momentum, lr 0.5
        SGD_KERNEL,
        dict(neg_lr=-0.5, momentum=0.9, one_minus_dampening=1.0, weight_decay=0.0, no_buffer=1.0),
        jnp.float32,
    )
    new_p, buf = call(SGD_KERNEL, scalars, [p], [g], [jnp.zeros(4, jnp.float32)], nesterov=False,
                       maximize=False)  # fmt: skip
    expected = np.arange(4.0, dtype=np.float32) - 0.5
    return bool(np.array_equal(np.asarray(new_p[0]), expected)) and bool(
        np.array_equal(np.asarray(buf[0]), np.ones(4, np.float32))
    )


def why_not(
    adapter: KernelAdapter | None,
    values: Mapping[str, Any],
    leaves: Sequence[jax.Array],
    slots: Mapping[str, Any],
    hyperparameter_names: Sequence[str],
) -> str | None:
    """Why one group cannot run on the kernels (``None``: it can, exactly)."""
    if adapter is None:
        return "no CPU kernel for this optimizer"
    reason = unavailable()
    if reason is not None:
        _warn_once(reason)
        return reason
    if values.get("fused") is False:
        return "fused=False in this group"
    if len({leaf.dtype for leaf in leaves}) != 1 or leaves[0].dtype not in _DTYPES:
        dtypes = sorted({str(leaf.dtype) for leaf in leaves})
        return f"the kernels need one dtype per group, float32 or float64; this group has {dtypes}"
    if any(d.platform != "cpu" for leaf in leaves for d in leaf.devices()):
        return "some of the group's leaves are not on CPU devices"
    for name in hyperparameter_names:
        value = values[name]
        if value is None or isinstance(value, bool):
            continue  # flags (nesterov, amsgrad, foreach, ...) are read statically
        mask = slots.get(name, "absent")
        if mask == "absent" or (isinstance(mask, tuple) and not all(mask)):
            return f"{name} is not a number (a schedule or an array): the transform handles it"
        if any(float32_array(v) for v in (value if isinstance(value, tuple) else (value,))):
            return (
                f"{name} is a float32 array: torch derives its scalars in float32 (as from a "
                f"float32 tensor); the transform does that"
            )
    return None


# -- one kernel call ------------------------------------------------------------------------------


def call(adapter, scalars, params, grads, buffers, in_place=True, **flags):
    """One kernel call on a group's leaves (or on one device's shards of them): returns (new
    params, new state buffers), the buffers updated in place, the params in place too unless
    ``in_place`` is false (then into new buffers)."""
    k, s = len(params), len(buffers)
    target = f"jaxsched_{adapter.entry}_{_DTYPES[params[0].dtype]}"
    results = [jax.ShapeDtypeStruct(p.shape, p.dtype) for p in params]
    results += [jax.ShapeDtypeStruct(b.shape, b.dtype) for b in buffers]
    aliases = {1 + 2 * k + j: k + j for j in range(s)}
    if in_place:
        aliases |= {1 + i: i for i in range(k)}
    out = jax.ffi.ffi_call(target, results, input_output_aliases=aliases)(
        scalars, *params, *grads, *buffers, **flags
    )
    return list(out[:k]), list(out[k:])


def pack(adapter: KernelAdapter, values: Mapping[str, Any], dtype: Any) -> jax.Array:
    """The scalar buffer of the adapter's kernel: ``values`` by name, in the library's order."""
    return jnp.stack([cast(values[name], dtype) for name in adapter.scalar_names])
