"""Pieces shared by the torch-exact transforms: hyperparameter values, checks, dtypes, flags.

A numeric hyperparameter is a Python float, a scalar array (possibly a tracer, when the
transform is built inside ``optax.inject_hyperparams``) or a schedule ``count -> value``.  Checks
run only on concrete values, so that the same factory works when JAX re-builds it under trace.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import RuntimeValue, concrete


@dataclasses.dataclass(frozen=True)
class SplitFloat(RuntimeValue):
    """A scalar hyperparameter known to more precision than its dtype holds: the value is
    ``hi + lo`` with ``hi`` its rounding to the dtype (float32 without x64) and ``lo`` the
    rest.  The stateful optimizers pass their traced hyperparameters so, from the double the
    user wrote, so that :func:`complement` (``1 - beta2``) and :func:`one_minus_pow` are as
    exact as with a Python float.  Everywhere else it counts as ``hi``."""

    hi: jax.Array
    lo: jax.Array

    def log(self) -> jax.Array:
        """``log(hi + lo)`` to first order in ``lo`` (``-inf`` at 0)."""
        return jnp.log(self.hi) + jnp.where(self.hi == 0, 0.0, self.lo / self.hi)


Hyperparam: TypeAlias = float | jax.Array | SplitFloat | Callable[[jax.Array], Any]


def is_zero(value: Hyperparam) -> bool:
    """True only for a Python (or numpy) number equal to 0.

    This decides the *structure* of the computation and of the state (e.g. whether SGD keeps a
    momentum buffer), so arrays, tracers and schedules count as possibly non-zero: under
    ``optax.inject_hyperparams`` the same factory is called with concrete arrays at ``init`` and
    with tracers at ``update``, and both calls must agree.
    """
    if callable(value) or isinstance(value, (jax.Array, SplitFloat)):
        return False
    return concrete(value) == 0.0


def scalar_dtype() -> np.dtype:
    """Dtype for step-dependent scalars (bias corrections): float64 under x64, else float32."""
    return jnp.result_type(float)


def float32_array(value: Any) -> bool:
    """A float32 array (concrete or traced) in a run whose scalars are float64: torch's float32
    tensor hyperparameter, whose derived scalars torch computes in float32 (``1 - lr * wd``,
    ``lr / bias_correction``), also for float64 parameters.  A Python float, or any value in a
    float32 run, is not one."""
    dtype = getattr(value, "dtype", None)
    return (
        dtype is not None
        and not isinstance(value, SplitFloat)
        and np.dtype(dtype) == np.float32
        and scalar_dtype() == np.float64
    )


def float32_round(value: Any) -> jax.Array:
    """``value`` rounded to float32 and held in the run's scalar dtype (double under x64): one
    float32 operation of torch's, when each operand is such a value and the operation runs in
    double (exact for ``+``/``*`` of two float32 values, correctly rounded for ``/``)."""
    # reduce_precision, not a float32 round trip: XLA drops f64->f32->f64 conversion pairs
    # (xla_allow_excess_precision), which would skip the rounding
    return jax.lax.reduce_precision(jnp.asarray(value, scalar_dtype()), 8, 23)


def lr_value(lr: Hyperparam, count: jax.Array) -> float | jax.Array:
    """:func:`value_at` for a learning rate, except that a float32 array lr stays a float32
    array (torch's float32 tensor lr, see :func:`float32_array`)."""
    if float32_array(lr):
        return jnp.asarray(lr, jnp.float32)
    return value_at(lr, count)


def like_lr(value: Any, lr: Any) -> Any:
    """``value`` as torch meets it in arithmetic with ``lr``: rounded to float32 when ``lr`` is
    a float32 tensor (a Python operand of a float32 tensor is rounded first), else unchanged."""
    return jnp.asarray(value, jnp.float32) if float32_array(lr) else value


def value_at(value: Hyperparam, count: jax.Array) -> float | jax.Array:
    """A hyperparameter's value for the update that ``count`` updates have preceded.

    A concrete value stays a Python float, so that expressions such as ``1 - beta1`` or
    ``1 - lr * weight_decay`` are evaluated in float64 and rounded once to the parameters' dtype
    where they meet an array, as torch does with its Python-float hyperparameters.  (Rounding
    ``beta1`` to float32 first would bias ``1 - beta1`` by 2e-7 relative at every step.)
    """
    number = concrete(value)
    if number is not None:
        return number
    if isinstance(value, SplitFloat):
        return value.hi
    if callable(value):
        value = value(count)
    return jnp.asarray(value, scalar_dtype())


def complement(value: Hyperparam, count: jax.Array) -> float | jax.Array:
    """``1 - value`` for the update after ``count`` updates, rounded once: in double for a
    Python float (torch's arithmetic), as ``(1 - hi) - lo`` for a :class:`SplitFloat` (``1 - hi``
    is exact for ``hi`` in [0.5, 1], where the subtraction cancels)."""
    number = concrete(value)
    if number is not None:
        return 1.0 - number
    if isinstance(value, SplitFloat):
        return (1 - value.hi) - value.lo
    return 1 - value_at(value, count)


def cast(value: float | jax.Array, dtype: Any) -> jax.Array:
    """A Python float or an array as an array of ``dtype`` (one rounding from float64)."""
    return jnp.asarray(value, dtype)


def compute_dtype(leaf: jax.Array) -> np.dtype:
    """Half-precision leaves are updated in float32 (torch's opmath) and stored back rounded."""
    if leaf.dtype in (jnp.bfloat16, jnp.float16):
        return np.dtype(np.float32)
    return leaf.dtype


def one_minus_exp(log_beta: Any, t: jax.Array) -> jax.Array:
    """``1 - beta ** t`` from ``log(beta)``: ``-expm1(t log beta)`` in the scalar dtype (the
    transforms and the Adam kernel adapter, whose ``log(beta)`` comes from the host)."""
    return -jnp.expm1(t.astype(scalar_dtype()) * log_beta)


def one_minus_pow(beta: Hyperparam, t: jax.Array) -> jax.Array:
    """``1 - beta ** t`` without float32 cancellation (``-expm1(t log beta)``).

    In float32, ``1 - 0.999 ** t`` computed naively loses five digits to the rounding of 0.999;
    with ``log(beta)`` taken in float64 when ``beta`` is a Python number it stays within a few
    ulp.  ``beta == 0`` gives 1 for every ``t >= 1``.
    """
    dtype = scalar_dtype()
    number = concrete(beta)
    if number is not None:
        if number == 0.0:
            return jnp.ones((), dtype)
        return one_minus_exp(math.log(number), t)
    if isinstance(beta, SplitFloat):
        return jnp.where(beta.hi == 0, 1.0, one_minus_exp(beta.log(), t))
    b = jnp.asarray(beta, dtype)
    return jnp.where(b == 0, 1.0, one_minus_exp(jnp.log(b), t))


def pow_t(beta: Hyperparam, t: jax.Array) -> jax.Array:
    """``beta ** t`` in the scalar dtype, with ``log(beta)`` in float64 for a Python ``beta``."""
    dtype = scalar_dtype()
    number = concrete(beta)
    if number is not None:
        if number == 0.0:
            return jnp.zeros((), dtype)
        return jnp.exp(t.astype(dtype) * math.log(number))
    if isinstance(beta, SplitFloat):
        return jnp.where(beta.hi == 0, 0.0, jnp.exp(t.astype(dtype) * beta.log()))
    return jnp.power(jnp.asarray(beta, dtype), t.astype(dtype))


def step_to(new: jax.Array, old: jax.Array) -> jax.Array:
    """The update that takes ``old`` to ``new`` under ``optax.apply_updates`` (``old + u``):
    ``new - old``, and 0 where they are equal, so that an infinite parameter that stays
    infinite is not turned into NaN by ``inf - inf``."""
    return jnp.where(new == old, jnp.zeros_like(new), new - old)


def torch_sign(x: jax.Array) -> jax.Array:
    """``torch.sign``: 0 for NaN (``jnp.sign`` gives NaN)."""
    return jnp.where(jnp.isnan(x), jnp.zeros_like(x), jnp.sign(x))


def python_max(a: Any, b: Any) -> jax.Array:
    """Python's ``max(a, b)`` on scalars, which torch's Adafactor uses: ``b`` only when
    ``b > a``, so a NaN ``b`` gives ``a`` (``jnp.maximum`` gives NaN)."""
    return jnp.where(b > a, b, a)


def python_min(a: Any, b: Any) -> jax.Array:
    """Python's ``min(a, b)`` on scalars (torch's LBFGS line search): ``b`` only when
    ``b < a``."""
    return jnp.where(b < a, b, a)


def need_params(name: str, params: Any) -> Any:
    if params is None:
        raise ValueError(
            f"jaxsched.{name} needs the current parameters for this configuration (weight "
            f"decay or parameter-dependent state): call tx.update(grads, state, params)"
        )
    return params


def lerp(start: jax.Array, end: jax.Array, weight: Any) -> jax.Array:
    """``torch.lerp``: ``start + w (end - start)`` for ``|w| < 0.5``, else
    ``end - (end - start)(1 - w)``, the two forms torch's kernel picks between."""
    diff = end - start
    return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def zero_count() -> jax.Array:
    """The step count of a fresh state (int32, as every transform's ``count``)."""
    return jnp.zeros((), jnp.int32)


def tree_zeros_like(tree: Any) -> Any:
    return jax.tree.map(jnp.zeros_like, tree)


def map_leaves(fn: Callable[..., tuple], grads: Any, *trees: Any) -> tuple:
    """Apply ``fn(g, *others) -> tuple`` leaf by leaf and return one tree per output.

    ``trees`` must share the structure of ``grads``; a ``None`` tree passes ``None`` for every
    leaf, and an output that is ``None`` for every leaf comes back as ``None`` (no state).
    """
    treedef = jax.tree.structure(grads)
    if any(x is None for x in jax.tree.leaves(grads, is_leaf=lambda x: x is None)):
        raise ValueError(
            "some gradients are None: this transform updates every leaf with one step count; "
            "wrap it in jaxsched.per_parameter(...) for torch's rule (a parameter without "
            "gradient is skipped and keeps its own step count)"
        )
    count = treedef.num_leaves
    columns = [
        [None] * count if tree is None else treedef.flatten_up_to(tree) for tree in (grads, *trees)
    ]
    results = [fn(*args) for args in zip(*columns, strict=True)]
    if not results:
        return tuple(treedef.unflatten([]) for _ in range(len(fn(*(None,) * len(columns)))))
    outputs = []
    for i in range(len(results[0])):
        leaves = [r[i] for r in results]
        outputs.append(None if all(x is None for x in leaves) else treedef.unflatten(leaves))
    return tuple(outputs)


def signed_grad(g, p, wd, decay: bool, maximize: bool, dtype):
    """torch's common prologue: negate for ``maximize``, then add coupled weight decay
    (``g + wd * p``), in ``dtype``."""
    g = -cast(g, dtype) if maximize else cast(g, dtype)
    return g + cast(wd, dtype) * cast(p, dtype) if decay else g


def adam_moments(g, p, m, v, dtype, *, maximize, decay, decoupled, lr, wd, b2, b1c, b2c):
    """The prologue Adam, NAdam and RAdam share, in torch's order: negate for ``maximize``;
    couple the weight decay into the gradient, or decouple it as ``p * (1 - lr * wd) - p``
    (returned as ``shrink``, else ``None``); then both moments (``b1c``, ``b2c``: ``1 - beta1``
    and ``1 - beta2`` from :func:`complement`).  Returns ``(g, shrink, m_new, v_new)`` in
    ``dtype``."""
    c = lambda x: cast(x, dtype)  # noqa: E731
    shrink = None
    if decay and decoupled:
        # torch: p *= (1 - lr * wd), the factor rounded once to the parameter dtype.
        g = signed_grad(g, p, wd, False, maximize, dtype)
        p = c(p)
        shrink = p * c(1 - lr * like_lr(wd, lr)) - p
    else:
        g = signed_grad(g, p, wd, decay, maximize, dtype)
    m_new = c(m) + (g - c(m)) * c(b1c)
    v_new = c(v) * c(b2) + g * g * c(b2c)
    return g, shrink, m_new, v_new
