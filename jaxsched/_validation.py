"""Argument checks shared by every factory: schedules, transforms, stateful classes.

Each check raises at construction time with a message that names the argument and the
offending value, so that a bad hyperparameter never surfaces later as a NaN or as an
exception from deep inside a traced computation.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class RuntimeValue:
    """Base of hyperparameter wrappers whose number is only known inside the compiled program
    (``transforms._common.SplitFloat``): checks skip them, as they skip tracers."""


def concrete(value: Any) -> float | None:
    """The Python float behind ``value``, or ``None`` for a schedule or a tracer."""
    if isinstance(value, (str, bytes, bool)):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    if callable(value) or isinstance(value, (jax.core.Tracer, RuntimeValue)):
        return None
    if isinstance(value, (np.ndarray, jax.Array)):
        if np.size(value) != 1:
            raise ValueError(f"Expected a scalar hyperparameter, but got shape {np.shape(value)}")
        return float(np.asarray(value).reshape(()))
    return float(value)


def check(value: Any, ok: Callable[[float], bool], message: str) -> None:
    """Raise ``ValueError(message.format(value))`` when a concrete ``value`` fails ``ok``.

    NaN fails every check (``ok`` is written as the condition a valid value meets).
    """
    try:
        number = concrete(value)
    except TypeError as err:
        raise TypeError(f"{message.format(repr(value))} ({err})") from None
    if number is not None and (math.isnan(number) or not ok(number)):
        raise ValueError(message.format(value))


def check_one_element_lr(lr: Any) -> None:
    """torch's check for a Tensor lr: an array (or tracer) lr must hold one element."""
    if isinstance(lr, (np.ndarray, jax.Array)) and np.size(lr) != 1:
        raise ValueError(f"Tensor lr must be 1-element (got shape {np.shape(lr)})")


def check_lr(lr: Any) -> None:
    check_one_element_lr(lr)
    check(lr, lambda v: v >= 0.0, "Invalid learning rate: {}")


def check_betas_kind(betas: tuple[Any, Any]) -> None:
    """torch's Adam/AdamW: ``betas`` are both Python floats or both tensors (here: arrays,
    tracers, or the stateful layer's held values); an int or a mix is refused.  A schedule
    (ours, not torch's) pairs with either."""

    def kind(beta: Any) -> str:
        if callable(beta):
            return "any"
        if isinstance(beta, float):
            return "float"
        if isinstance(beta, (np.ndarray, jax.Array, jax.core.Tracer, RuntimeValue)):
            return "array"
        return "other"

    kinds = {kind(b) for b in betas} - {"any"}
    if "other" in kinds or len(kinds) > 1:
        raise ValueError("betas must be either both floats or both Tensors")


def check_eps(eps: Any) -> None:
    check(eps, lambda v: v >= 0.0, "Invalid epsilon value: {}")


def check_weight_decay(weight_decay: Any) -> None:
    check(weight_decay, lambda v: v >= 0.0, "Invalid weight_decay value: {}")


def check_betas(betas: tuple[Any, Any]) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Expected betas to be a pair (beta1, beta2), but got {betas!r}")
    for i, beta in enumerate(betas):
        check(beta, lambda v: 0.0 <= v < 1.0, f"Invalid beta parameter at index {i}: {{}}")


def check_flags(
    foreach: bool | None = None,
    fused: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
) -> None:
    """Torch's implementation flags change nothing here; torch's own conflicts still raise."""
    del capturable
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if fused and differentiable:
        raise RuntimeError("`fused` does not support `differentiable`")


def as_real(name: str, value: Any) -> float:
    """Return ``value`` as a finite Python float or raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"Expected a real number for {name}, but got {value!r}")
    if isinstance(value, (np.ndarray, jax.Array)):
        if value.shape != ():
            raise ValueError(f"Expected a scalar for {name}, but got shape {value.shape}")
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise ValueError(f"Expected a real number for {name}, but got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"Expected a finite {name}, but got {value!r}")
    return out


def as_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int (integral floats allowed) with an optional lower bound."""
    real = as_real(name, value)
    if real != int(real):
        raise ValueError(f"Expected an integer {name}, but got {value!r}")
    out = int(real)
    if minimum is not None and out < minimum:
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"Expected {kind} integer {name}, but got {value!r}")
    return out


def check_base_lr(name: str, value: Any) -> float:
    """A learning rate: finite and non-negative (torch: ``Invalid learning rate``)."""
    out = as_real(name, value)
    if out < 0.0:
        raise ValueError(f"Invalid learning rate {name}: {value!r}")
    return out


def check_steps_per_epoch(value: Any) -> int:
    return as_int("steps_per_epoch", value, minimum=1)


def check_scalar_fn(name: str, fn: Any, arg_desc: str) -> Callable[[jax.Array], jax.Array]:
    """Check that ``fn`` is callable, traceable by JAX on an integer scalar, and returns a scalar.

    The check runs ``jax.eval_shape`` once, so nothing is computed.  A function that needs a
    concrete Python number (``math.cos(e)``, ``if e < 5:``) fails here with a short message
    instead of a tracer error at the first step.
    """
    if not callable(fn):
        raise TypeError(f"{name} should be a function, but got {type(fn).__name__}")
    probe = jax.ShapeDtypeStruct((), jnp.int32)
    try:
        out = jax.eval_shape(fn, probe)
    except Exception as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TypeError(
            f"{name} must be traceable by JAX: it is called with {arg_desc} as an integer "
            f"jax.Array inside jit, so it must use jnp operations (jnp.where instead of if, "
            f"jnp.cos instead of math.cos). Calling it on a traced value raised "
            f"{type(err).__name__}: {first_line}"
        ) from None
    leaves = jax.tree_util.tree_leaves(out)
    if len(leaves) != 1 or leaves[0].shape != ():
        raise ValueError(f"{name} must return a scalar, but it returned {out}")
    if not (
        jnp.issubdtype(leaves[0].dtype, jnp.floating)
        or jnp.issubdtype(leaves[0].dtype, jnp.integer)
    ):
        raise ValueError(f"{name} must return a real number, but it returned {out}")
    return fn


def _positive_int(name: str, value: Any, show: Callable[[Any], str]) -> int:
    # torch checks the type too: 10.0 is rejected (and so is a bool here)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"Expected positive integer {name}, but got {show(value)}")
    return value


def check_cycle(
    total_steps: int | None,
    epochs: int | None,
    steps_per_epoch: int | None,
    pct_start: float,
    anneal_strategy: str,
    show: Callable[[Any], str] = repr,
) -> int:
    """OneCycle's length and shape arguments, checked as torch checks them (functional and
    stateful alike); returns the total number of steps.  ``show`` writes the bad value into
    the message: ``repr`` (the functional API: ``'foo'``), ``str`` (the stateful class:
    torch's exact text)."""
    if total_steps is not None:
        total = _positive_int("total_steps", total_steps, show)
    elif epochs is not None and steps_per_epoch is not None:
        total = _positive_int("epochs", epochs, show) * _positive_int(
            "steps_per_epoch", steps_per_epoch, show
        )
    else:
        raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
    if not isinstance(pct_start, float) or not 0.0 <= pct_start <= 1.0:
        raise ValueError(f"Expected float between 0 and 1 pct_start, but got {show(pct_start)}")
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(
            f"anneal_strategy must be one of 'cos' or 'linear', instead got {show(anneal_strategy)}"
        )
    return total
