"""The CPU fast path of ``optim.SGD``, ``optim.Adam`` and ``optim.AdamW``: one pass over memory.

XLA:CPU has no multi-output fusion: written in ``jnp``, an Adam step becomes three loops per
leaf (first moment, second moment, then the parameter from both), about ten array passes where
one loop needs seven, and every leaf is its own loop.  The kernels in ``csrc/fused_cpu.cc``
(called through XLA's typed FFI, inside the same jitted step) update a whole parameter group in
one multithreaded loop, with the group's state held as one flat buffer per quantity and updated
in place; the parameters too (``opt.step``), or into new buffers where other operations read
them in the same program (a train step: XLA would copy them first otherwise).

Exactness: the kernels compute the elementwise part of :func:`jaxsched.sgd` /
:func:`jaxsched.adam` operation for operation in the parameter dtype, each operation rounded
(no FMA contraction, as torch's own kernels); the scalars (negated learning rate, bias
corrections, ``1 - beta``, ...) are computed here in ``jnp`` with the transforms' own helpers.
XLA:CPU contracts multiply-adds into FMAs where the CPU has them, so the two paths agree to
rounding, not bit for bit; both are tested against torch at the contract's tolerances.

The path is taken when the kernels were built and load, the default backend is the CPU, every
group's leaves share one dtype (float32 or float64), every numeric hyperparameter is a number,
and no group sets ``fused=False``; otherwise the optimizer runs the transform under XLA.
``JAXSCHED_FUSED=0`` in the environment turns the path off.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import transforms as T
from ..transforms._adam import AdamState
from ..transforms._common import cast, one_minus_pow
from ..transforms._sgd import SGDState

_KINDS = {T.sgd: "sgd", T.adam: "adam", T.adamw: "adamw"}
_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_TARGETS = [f"jaxsched_{k}_{d}" for k in ("sgd", "adam") for d in ("f32", "f64")]


@functools.cache
def kernels_available() -> bool:
    """True when the compiled kernels load, register with XLA and pass a smoke test."""
    if os.environ.get("JAXSCHED_FUSED", "1") == "0" or jax.default_backend() != "cpu":
        return False
    try:
        spec = importlib.util.find_spec("jaxsched.optim._fused_cpu")
        if spec is None or spec.origin is None:
            return False
        library = ctypes.CDLL(spec.origin)
        for name in _TARGETS:
            capsule = jax.ffi.pycapsule(getattr(library, name))
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
        return _smoke_test()
    except Exception:  # built against an incompatible jaxlib, no FFI, ...: XLA alone
        return False


def _smoke_test() -> bool:
    p, g = jnp.arange(4.0, dtype=jnp.float32), jnp.ones(4, jnp.float32)
    scalars = jnp.array([-0.5, 0.9, 1.0, 0.0, 1.0], jnp.float32)  # first SGD step, lr 0.5
    new_p, buf = _call("sgd", scalars, [p], [g], [jnp.zeros(4, jnp.float32)], nesterov=False,
                       maximize=False)  # fmt: skip
    expected = np.arange(4.0, dtype=np.float32) - 0.5
    return bool(np.array_equal(np.asarray(new_p[0]), expected)) and bool(
        np.array_equal(np.asarray(buf[0]), np.ones(4, np.float32))
    )


def kind_of(factory: Callable) -> str | None:
    return _KINDS.get(factory)


def applies(
    factory: Callable,
    groups: Sequence[Mapping[str, Any]],
    group_leaves: Sequence[Sequence[jax.Array]],
    layout: Mapping[int, Mapping[str, Any]],
    hyperparameter_names: Sequence[str],
) -> bool:
    """Whether the fast path is exact and available for these groups."""
    if kind_of(factory) is None or not kernels_available():
        return False
    for g, (values, leaves) in enumerate(zip(groups, group_leaves, strict=True)):
        if values.get("fused") is False or not leaves:
            return False
        if len({leaf.dtype for leaf in leaves}) != 1 or leaves[0].dtype not in _DTYPES:
            return False
        if any(d.platform != "cpu" for leaf in leaves for d in leaf.devices()):
            return False
        for name in hyperparameter_names:
            value = values[name]
            if value is None or isinstance(value, bool):
                continue  # flags (nesterov, amsgrad, foreach, ...) are read statically
            mask = layout[g].get(name, "absent")
            if mask == "absent" or (isinstance(mask, tuple) and not all(mask)):
                return False  # a schedule or a non-number: the transform handles it
    return True


# -- state layout: per-parameter fields as one flat buffer per group ------------------------------


def to_flat(state: Any) -> Any:
    """The transform's state over a group's leaves -> the same NamedTuple whose per-parameter
    fields (lists of arrays) are one flat buffer each."""
    return type(state)(
        *(jnp.concatenate([jnp.ravel(x) for x in v]) if isinstance(v, list) else v for v in state)
    )


def flat_zeros(shapes: Any) -> Any:
    """A fresh state in the flat layout from the shapes of the transform's state (every SGD and
    Adam buffer starts at zero, as does the count)."""
    return type(shapes)(
        *(
            jnp.zeros(sum(int(np.prod(x.shape)) for x in v), v[0].dtype)
            if isinstance(v, list)
            else (None if v is None else jnp.zeros(v.shape, v.dtype))
            for v in shapes
        )
    )


def to_tree(state: Any, shapes: Sequence[tuple[int, ...]]) -> Any:
    """Inverse of :func:`to_flat` for a group whose leaves have ``shapes`` (the flat buffers are
    the 1-D fields; the count is a scalar)."""
    sizes = np.cumsum([0, *(int(np.prod(s)) for s in shapes)])

    def split(flat: jax.Array) -> list[jax.Array]:
        return [flat[a:b].reshape(s) for a, b, s in zip(sizes[:-1], sizes[1:], shapes, strict=True)]

    return type(state)(*(split(v) if v is not None and v.ndim == 1 else v for v in state))


# -- the step -------------------------------------------------------------------------------------


def _call(kind, scalars, params, grads, state, in_place=True, **flags):
    """One kernel call on a group: returns (new params, new state buffers), the state in place,
    the params in place too unless ``in_place`` is false (then into new buffers)."""
    k, s = len(params), len(state)
    target = f"jaxsched_{'sgd' if kind == 'sgd' else 'adam'}_{_DTYPES[params[0].dtype]}"
    results = [jax.ShapeDtypeStruct(p.shape, p.dtype) for p in params]
    results += [jax.ShapeDtypeStruct(b.shape, b.dtype) for b in state]
    aliases = {1 + 2 * k + j: k + j for j in range(s)}
    if in_place:
        aliases |= {1 + i: i for i in range(k)}
    call = jax.ffi.ffi_call(target, results, input_output_aliases=aliases)
    out = call(scalars, *params, *grads, *state, **flags)
    return list(out[:k]), list(out[k:])


def group_update(
    kind: str, params, grads, state, hyper: Mapping[str, Any], statics, in_place: bool = True
):
    """The fast counterpart of ``tx.update`` + ``optax.apply_updates`` for one group (all
    hyperparameters traced scalars from the optimizer's vector, flags from ``statics``)."""
    dtype = params[0].dtype
    count = state.count
    if kind == "sgd":
        lr, mom, damp, wd = (hyper[k] for k in ("lr", "momentum", "dampening", "weight_decay"))
        scalars = jnp.stack([
            cast(-lr, dtype), cast(mom, dtype), cast(1 - damp, dtype), cast(wd, dtype),
            (count == 0).astype(dtype),
        ])  # fmt: skip
        new_params, (buf,) = _call(
            kind, scalars, params, grads, [state.momentum_buffer], in_place,
            maximize=bool(statics["maximize"]), nesterov=bool(statics["nesterov"]),
        )  # fmt: skip
        return new_params, SGDState(count + 1, buf)
    lr, (b1, b2), eps, wd = (hyper[k] for k in ("lr", "betas", "eps", "weight_decay"))
    t = count + 1
    step_size = lr / one_minus_pow(b1, t)
    bc2_sqrt = jnp.sqrt(one_minus_pow(b2, t))
    scalars = jnp.stack([
        cast(-step_size, dtype), cast(bc2_sqrt, dtype), cast(eps, dtype), cast(1 - b1, dtype),
        cast(b2, dtype), cast(1 - b2, dtype), cast(wd, dtype), cast(1 - lr * wd, dtype),
    ])  # fmt: skip
    amsgrad = bool(statics["amsgrad"])
    buffers = [state.exp_avg, state.exp_avg_sq] + ([state.max_exp_avg_sq] if amsgrad else [])
    decoupled = kind == "adamw" or bool(statics.get("decoupled_weight_decay", False))
    new_params, new = _call(
        kind, scalars, params, grads, buffers, in_place,
        maximize=bool(statics["maximize"]), amsgrad=amsgrad, decoupled=decoupled,
    )  # fmt: skip
    return new_params, AdamState(t, new[0], new[1], new[2] if amsgrad else None)


def raw_step(
    kind: str,
    group_indices: Sequence[Sequence[int]],
    statics: Sequence[Mapping[str, Any]],
    unpack: Callable[[jax.Array], dict],
    in_place: bool = True,
) -> Callable:
    """``step(leaves, inner, grad_leaves, vector) -> (leaves, inner, vector)``, the same
    signature as the optimizer's XLA step (``inner`` in the flat layout), to be jitted.
    ``in_place=False`` writes the new parameters to new buffers: for programs where other
    operations read the parameters too (XLA would otherwise copy them first)."""

    def step(leaves, inner, grad_leaves, vector):
        hyper = unpack(vector)
        out, new_inner = list(leaves), {}
        for g, idx in enumerate(group_indices):
            new_params, new_inner[g] = group_update(
                kind, [leaves[i] for i in idx], [grad_leaves[i] for i in idx], inner[g],
                hyper[g], statics[g], in_place,
            )  # fmt: skip
            for i, p in zip(idx, new_params, strict=True):
                out[i] = p
        return out, new_inner, vector

    return step
