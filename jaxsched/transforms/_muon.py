"""Torch's Muon: momentum, then the Newton-Schulz orthogonalisation in bfloat16, decoupled decay."""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validation import check, check_one_element_lr
from ._common import (
    Hyperparam,
    cast,
    complement,
    compute_dtype,
    lerp,
    like_lr,
    lr_value,
    map_leaves,
    step_to,
    tree_zeros_like,
    value_at,
    zero_count,
)
from ._spec import TorchSpec, words

Orientation = Literal["flax", "torch"]


class MuonState(NamedTuple):
    """``momentum_buffer``: torch's buffer (created with the state: torch makes it at the first
    step); ``count``: updates applied (torch keeps no ``step`` for Muon)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count
    momentum_buffer: Any


def to_bfloat16(x: jax.Array) -> jax.Array:
    """``x`` (float32) rounded to bfloat16 (to nearest, ties to even) and kept in float32.

    Written on the bits: XLA may drop a round trip through ``astype(bfloat16)`` when it
    fuses (a jitted program then computes in float32 throughout), and torch's iteration
    rounds at every step.  NaN and infinities are kept."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    rounded = (bits + jnp.uint32(0x7FFF) + ((bits >> 16) & jnp.uint32(1))) & jnp.uint32(0xFFFF0000)
    out = jax.lax.bitcast_convert_type(rounded, jnp.float32)
    return jnp.where(jnp.isfinite(x), out, x)


def _addmm(bias: jax.Array, a: jax.Array, b: jax.Array, beta: float, alpha: float = 1.0):
    """torch's bfloat16 ``addmm(bias, a, b, beta=, alpha=)`` on the CPU, on bfloat16 values
    held in float32: the product accumulated in float32 (products of bfloat16 numbers are
    exact there), ``beta * bias + alpha * product`` in float32, rounded once."""
    product = jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)
    return to_bfloat16(jnp.float32(beta) * bias + jnp.float32(alpha) * product)


def newton_schulz(
    matrix: jax.Array, coefficients: tuple[float, float, float], steps: int, eps: Hyperparam
) -> jax.Array:
    """torch's ``_zeropower_via_newtonschulz`` on a torch-oriented (out, in) matrix, in
    bfloat16 arithmetic (values rounded to bfloat16 after every operation, as torch's bfloat16
    tensors are; returned as float32): ``X <- X / max(||X||, eps)`` on the wide orientation,
    then ``steps`` times ``A = X X^T``, ``B = b A + c A A``, ``X = a X + B X``."""
    a, b, c = coefficients
    if matrix.dtype == jnp.float64:  # one rounding, as torch's double -> bfloat16
        x = matrix.astype(jnp.bfloat16).astype(jnp.float32)
    else:
        x = to_bfloat16(matrix.astype(jnp.float32))
    tall = matrix.shape[0] > matrix.shape[1]
    if tall:
        x = x.T
    norm = to_bfloat16(jnp.sqrt(jnp.sum(jnp.square(x))))
    floor = to_bfloat16(jnp.asarray(value_at(eps, jnp.zeros((), jnp.int32)), jnp.float32))
    x = to_bfloat16(x / jnp.maximum(norm, floor))
    for _ in range(steps):
        gram = to_bfloat16(jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST))
        gram_update = _addmm(gram, gram, gram, beta=b, alpha=c)
        x = _addmm(x, gram_update, x, beta=a)
    return x.T if tall else x


def adjusted_ratio(shape: tuple[int, int], adjust_lr_fn: str | None) -> float:
    """torch's ``_adjust_lr`` factor for a torch-oriented ``(A, B)`` matrix."""
    rows, cols = shape
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))  # "match_rms_adamw"


def muon(
    lr: Hyperparam = 1e-3,
    weight_decay: Hyperparam = 0.1,
    momentum: Hyperparam = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
    eps: Hyperparam = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    *,
    orientation: Orientation = "flax",
) -> optax.GradientTransformation:
    r"""Muon exactly as ``torch.optim.Muon`` (2-D parameters only).

    .. math::
        B_t &= \mathrm{lerp}(B_{t-1}, g_t, 1 - \mu), \qquad
        \tilde B_t = \mathrm{lerp}(g_t, B_t, \mu) \text{ (nesterov) or } B_t \\
        O_t &= \mathrm{NS}^{(a,b,c)}_k(\tilde B_t; \epsilon) \text{ in bfloat16}, \qquad
        \theta_t = \theta_{t-1}(1 - \eta\lambda) - \eta\, r(A, B)\, O_t

    with :math:`r = \sqrt{\max(1, A/B)}` (``adjust_lr_fn=None`` or ``"original"``) or
    :math:`0.2\sqrt{\max(A, B)}` (``"match_rms_adamw"``) for a torch ``(A, B) = (out, in)``
    matrix, and :math:`\mathrm{NS}` torch's quintic Newton-Schulz iteration (:func:`newton_schulz`).

    ``orientation``: how the parameters store a dense layer. ``"flax"`` (default): a kernel is
    ``(in, out)``, torch's weight transposed; the orthogonalisation and the lr adjustment run on
    the transpose, so a flax kernel gets exactly the update torch gives its weight.
    ``"torch"``: ``(out, in)`` as ``nn.Linear.weight``.  ``ns_steps``, ``ns_coefficients`` and
    ``adjust_lr_fn`` shape the computation (under :func:`jaxsched.grouped`, pass
    ``static_args=("ns_steps", "ns_coefficients")``).

    Differences from PyTorch: torch raises for ``ns_steps >= 100``, a non-2-D parameter or
    coefficients that are not three at the first step; here at construction / ``init``.
    Differences from optax: ``optax.contrib.muon`` runs the iteration in float32 with another
    normalisation and scaling and applies Adam to non-2-D leaves; its trajectories differ.
    """
    check_one_element_lr(lr)
    check(lr, lambda v: v >= 0.0, "Learning rate should be >= 0 but is: {}")
    check(momentum, lambda v: v >= 0.0, "momentum should be >= 0 but is: {}")
    check(weight_decay, lambda v: v >= 0.0, "weight decay should be >= 0 but is: {}")
    if adjust_lr_fn is not None and adjust_lr_fn not in ("original", "match_rms_adamw"):
        raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 0:
        raise TypeError(f"ns_steps must be a non-negative int, got {ns_steps!r}")
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if not isinstance(ns_coefficients, (tuple, list)) or len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    coefficients = tuple(float(x) for x in ns_coefficients)
    if orientation not in ("flax", "torch"):
        raise ValueError(f"orientation must be 'flax' or 'torch', got {orientation!r}")
    flax = orientation == "flax"

    def init_fn(params):
        for p in jax.tree.leaves(params):
            if jnp.ndim(p) != 2:
                raise ValueError(
                    "Muon only supports 2D parameters whereas we found a parameter with size: "
                    f"torch.Size({list(jnp.shape(p))})"
                )
        return MuonState(zero_count(), tree_zeros_like(params))

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError("muon needs params: its decay and update replace them")
        count = state.count
        wd_t, mom_t = (value_at(h, count) for h in (weight_decay, momentum))
        lr_t = lr_value(lr, count)
        one_minus_mom = complement(momentum, count)

        def leaf(g, p, buf):
            dtype = compute_dtype(g)
            c = lambda x: cast(x, dtype)  # noqa: E731
            g32, buf32 = c(g), c(buf)
            buf_new = lerp(buf32, g32, c(one_minus_mom))
            update = lerp(g32, buf_new, c(mom_t)) if nesterov else buf_new
            weight = update.T if flax else update  # torch's (out, in)
            ortho = newton_schulz(weight, coefficients, ns_steps, eps)
            ortho = ortho.T if flax else ortho
            ratio = adjusted_ratio(weight.shape, adjust_lr_fn)
            new_p = c(p) * c(1 - lr_t * like_lr(wd_t, lr_t))
            new_p = new_p + c(-(lr_t * like_lr(ratio, lr_t))) * ortho.astype(dtype)
            return step_to(new_p, c(p)).astype(p.dtype), buf_new.astype(buf.dtype)

        updates, buf = map_leaves(leaf, grads, params, state.momentum_buffer)
        return updates, MuonState(count + 1, buf)

    return optax.GradientTransformation(init_fn, update_fn)


MUON = TorchSpec(
    name="Muon",
    factory=muon,
    keys=words("lr weight_decay momentum nesterov ns_coefficients eps ns_steps adjust_lr_fn"),
    static_args=frozenset({"ns_steps", "ns_coefficients"}),
    step_entry=False,
    options=("orientation",),
)
