"""User-defined factors: LambdaLR and MultiplicativeLR."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.extend
import jax.numpy as jnp
import optax

from .._validation import check_base_lr, check_scalar_fn, check_steps_per_epoch
from ._numerics import as_epoch, epoch_of, float_dtype, int_pow, scale

LrLambda = Callable[[jax.Array], jax.Array | float]


def _constant_value(fn: LrLambda) -> float | None:
    """The value of ``fn`` if its result does not depend on its argument, else ``None``."""
    closed = jax.make_jaxpr(fn)(jax.ShapeDtypeStruct((), jnp.int32))
    (out,) = closed.jaxpr.outvars
    if isinstance(out, jax.extend.core.Literal):
        return float(out.val)
    if out in closed.jaxpr.constvars:
        index = closed.jaxpr.constvars.index(out)
        return float(closed.consts[index])
    return None


def lambda_lr(base_lr: float, lr_lambda: LrLambda, *, steps_per_epoch: int = 1) -> optax.Schedule:
    r"""``base_lr`` times a user factor of the epoch (torch ``LambdaLR``).

    .. math:: \eta_e = \eta_0 \, \lambda(e)

    ``lr_lambda`` receives the epoch as an integer ``jax.Array`` of the run's default width
    (int64 under x64, so ``e / 3`` is computed in float64 as torch's Python int epoch is, even
    though an optax transform counts in int32) and must be written with ``jnp``
    operations (it runs under ``jit``); this is checked once, at construction, with
    ``jax.eval_shape``.  In float32 the factor is evaluated in float32: ``0.95 ** e`` rounds 0.95
    first, so prefer ``jnp.exp(e * math.log(0.95))`` for long exponential tails.
    """
    b = check_base_lr("base_lr", base_lr)
    fn = check_scalar_fn("lr_lambda", lr_lambda, "the epoch")
    n = check_steps_per_epoch(steps_per_epoch)

    def schedule(count):
        e = epoch_of(count, n)
        return scale(b, jnp.asarray(fn(as_epoch(e)), float_dtype()))

    return schedule


def multiplicative_lr(
    base_lr: float, lr_lambda: LrLambda, *, steps_per_epoch: int = 1
) -> optax.Schedule:
    r"""``base_lr`` times the running product of a user factor (torch ``MultiplicativeLR``).

    .. math:: \eta_e = \eta_0 \prod_{i=1}^{e} \lambda(i)

    As in torch, ``lr_lambda(0)`` is never used.  A factor that does not depend on the epoch
    (``lambda e: 0.97``) is recognised from its jaxpr and evaluated in closed form, ``c ** e``,
    with the constant kept in float64.  Otherwise the product has no closed form, so it is
    accumulated by a ``lax.while_loop``: evaluating epoch ``e`` costs ``e`` calls of ``lr_lambda``
    (it stops early once the product reaches exactly 0), and in float32 each factor carries the
    float32 rounding of ``lr_lambda`` itself.
    """
    b = check_base_lr("base_lr", base_lr)
    fn = check_scalar_fn("lr_lambda", lr_lambda, "the epoch")
    n = check_steps_per_epoch(steps_per_epoch)
    constant = _constant_value(fn)

    def schedule(count):
        e = epoch_of(count, n)
        dtype = float_dtype()
        if constant is not None:
            return scale(b, int_pow(constant, e))

        def keep_going(carry):
            i, acc = carry
            return (i < e) & (acc != 0)

        def multiply(carry):
            i, acc = carry
            return i + 1, acc * jnp.asarray(fn(as_epoch(i + 1)), dtype)

        start = (jnp.zeros_like(e), jnp.ones((), dtype))
        _, product = jax.lax.while_loop(keep_going, multiply, start)
        return scale(b, product)

    return schedule
