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
import importlib.util
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import transforms as T
from ..transforms._common import cast

_KINDS = {T.sgd: "sgd", T.adam: "adam", T.adamw: "adamw"}
_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
# csrc/fused_cpu.cc's jaxsched_kernels_version(): 2 = SGD's "no buffer yet" scalar and momentum
# flag; 3 = named scalars (the library lists them; checked at load)
KERNELS_VERSION = 3
# The scalars each kernel reads, in the order of the library's SgdScalars / AdamScalars structs.
SCALAR_NAMES = {
    "sgd": ("neg_lr", "momentum", "one_minus_dampening", "weight_decay", "no_buffer"),
    "adam": (
        "neg_step_size", "bias_correction2_sqrt", "eps", "one_minus_beta1", "beta2",
        "one_minus_beta2", "weight_decay", "decay_factor",
    ),
}  # fmt: skip
_TARGETS = [f"jaxsched_{k}_{d}" for k in ("sgd", "adam") for d in ("f32", "f64")]


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
        spec = importlib.util.find_spec("jaxsched.optim._fused_cpu")
        if spec is None or spec.origin is None:
            return "the kernel library was not built at install"
        library = ctypes.CDLL(spec.origin)
        stale = version_problem(library, spec.origin)
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
        "sgd",
        dict(neg_lr=-0.5, momentum=0.9, one_minus_dampening=1.0, weight_decay=0.0, no_buffer=1.0),
        jnp.float32,
    )
    new_p, buf = call("sgd", scalars, [p], [g], [jnp.zeros(4, jnp.float32)], nesterov=False,
                       maximize=False)  # fmt: skip
    expected = np.arange(4.0, dtype=np.float32) - 0.5
    return bool(np.array_equal(np.asarray(new_p[0]), expected)) and bool(
        np.array_equal(np.asarray(buf[0]), np.ones(4, np.float32))
    )


def kind_of(factory: Callable) -> str | None:
    return _KINDS.get(factory)


def why_not(
    factory: Callable,
    values: Mapping[str, Any],
    leaves: Sequence[jax.Array],
    layout: Mapping[str, Any],
    hyperparameter_names: Sequence[str],
) -> str | None:
    """Why one group cannot run on the kernels (``None``: it can, exactly)."""
    if kind_of(factory) is None:
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
        mask = layout.get(name, "absent")
        if mask == "absent" or (isinstance(mask, tuple) and not all(mask)):
            return f"{name} is not a number (a schedule or an array): the transform handles it"
    return None


# -- one kernel call ------------------------------------------------------------------------------


def call(kind, scalars, params, grads, buffers, in_place=True, **flags):
    """One kernel call on a group's leaves (or on one device's shards of them): returns (new
    params, new state buffers), the buffers updated in place, the params in place too unless
    ``in_place`` is false (then into new buffers)."""
    k, s = len(params), len(buffers)
    target = f"jaxsched_{'sgd' if kind == 'sgd' else 'adam'}_{_DTYPES[params[0].dtype]}"
    results = [jax.ShapeDtypeStruct(p.shape, p.dtype) for p in params]
    results += [jax.ShapeDtypeStruct(b.shape, b.dtype) for b in buffers]
    aliases = {1 + 2 * k + j: k + j for j in range(s)}
    if in_place:
        aliases |= {1 + i: i for i in range(k)}
    out = jax.ffi.ffi_call(target, results, input_output_aliases=aliases)(
        scalars, *params, *grads, *buffers, **flags
    )
    return list(out[:k]), list(out[k:])


def derive(kind: str) -> Callable[[Mapping[str, Any]], dict[str, float]]:
    """The host-side scalars of a group's kernel step, from its Python-float values in double
    precision and rounded once when uploaded, as torch derives them from its Python floats."""

    def log(beta: float) -> float:
        return math.log(beta) if beta > 0 else -math.inf  # 1 - 0**t = 1 for t >= 1

    if kind == "sgd":
        return lambda v: {"one_minus_dampening": 1.0 - float(v["dampening"])}

    def adam(v: Mapping[str, Any]) -> dict[str, float]:
        b1, b2 = (float(b) for b in v["betas"])
        lr, wd = float(v["lr"]), float(v["weight_decay"])
        return {
            "one_minus_beta1": 1.0 - b1,
            "one_minus_beta2": 1.0 - b2,
            "log_beta1": log(b1),
            "log_beta2": log(b2),
            "decay_factor": 1.0 - lr * wd,
        }

    return adam


def scalars(kind: str, hyper: Mapping[str, Any], derived: Mapping[str, Any], counters, dtype):
    """The kernel's scalar buffer for a step from the group's state ``counters`` (its scalar
    fields) and the traced values of the hyperparameter vector; the order is the one
    ``csrc/fused_cpu.cc`` reads."""
    count = counters.count
    if kind == "sgd":
        values = {
            "neg_lr": -hyper["lr"],
            "momentum": hyper["momentum"],
            "one_minus_dampening": derived["one_minus_dampening"],
            "weight_decay": hyper["weight_decay"],
            "no_buffer": (counters.momentum_steps == 0).astype(dtype),
        }
    else:
        t = (count + 1).astype(derived["log_beta1"].dtype)
        values = {
            "neg_step_size": -hyper["lr"] / -jnp.expm1(t * derived["log_beta1"]),
            "bias_correction2_sqrt": jnp.sqrt(-jnp.expm1(t * derived["log_beta2"])),
            "eps": hyper["eps"],
            "one_minus_beta1": derived["one_minus_beta1"],
            "beta2": hyper["betas"][1],
            "one_minus_beta2": derived["one_minus_beta2"],
            "weight_decay": hyper["weight_decay"],
            "decay_factor": derived["decay_factor"],
        }
    return pack("sgd" if kind == "sgd" else "adam", values, dtype)


def pack(kind: str, values: Mapping[str, Any], dtype: Any) -> jax.Array:
    """The scalar buffer of kernel ``kind`` (``"sgd"`` or ``"adam"``, which AdamW shares):
    ``values`` by name, in the library's order."""
    return jnp.stack([cast(values[name], dtype) for name in SCALAR_NAMES[kind]])


def advance(kind: str, state: Any, hyper: Mapping[str, Any]) -> dict[str, Any]:
    """The state's scalar fields after a step."""
    out = {"count": state.count + 1}
    if kind == "sgd":
        out["momentum_steps"] = state.momentum_steps + (hyper["momentum"] != 0).astype(jnp.int32)
    return out


def attributes(kind: str, statics: Mapping[str, Any]) -> dict[str, bool]:
    """The kernel's compile-time flags for a group."""
    if kind == "sgd":
        return {"maximize": bool(statics["maximize"]), "nesterov": bool(statics["nesterov"])}
    decoupled = kind == "adamw" or bool(statics.get("decoupled_weight_decay", False))
    return {
        "maximize": bool(statics["maximize"]),
        "amsgrad": bool(statics["amsgrad"]),
        "decoupled": decoupled,
    }


def buffer_fields(kind: str, statics: Mapping[str, Any]) -> tuple[str, ...]:
    """The state fields the kernel updates, in the order it takes them."""
    if kind == "sgd":
        return ("momentum_buffer",)
    return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if statics["amsgrad"] else ())
