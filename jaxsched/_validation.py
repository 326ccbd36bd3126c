"""Argument checks shared by every factory.

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
