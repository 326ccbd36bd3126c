"""Gradient clipping against torch.nn.utils: the functions (every norm type, both precisions,
non-finite norms, None leaves) and the optax transforms in a chain with a torch-exact
optimizer, against torch's clip then step."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxsched
from tests.transforms.harness import jax_trajectory

SHAPES = {"a": (4, 3), "b": (5,), "c": ()}
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
RTOL = {"float32": 2e-6, "float64": 1e-14}


def grads(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) * scale for k, s in SHAPES.items()}


def torch_clip(g, max_norm, norm_type, precision):
    tensors = [torch.zeros(np.shape(v), dtype=TORCH_DTYPE[precision], requires_grad=True)
               for v in g.values()]  # fmt: skip
    for t, v in zip(tensors, g.values(), strict=True):
        t.grad = torch.tensor(v, dtype=TORCH_DTYPE[precision])
    total = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type)
    return {k: t.grad.double().numpy() for k, t in zip(g, tensors, strict=True)}, float(total)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf, -math.inf, 0.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # clipped, and multiplied by a coefficient ~1
def test_clip_grad_norm_matches_torch(norm_type, max_norm, precision):
    g = grads()
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    theirs, their_total = torch_clip(g, max_norm, norm_type, precision)
    clipped, total = jax.jit(lambda g: jaxsched.clip_grad_norm_(g, max_norm, norm_type))(
        {k: jnp.asarray(v, dtype) for k, v in g.items()}
    )
    assert float(total) == pytest.approx(their_total, rel=RTOL[precision])
    for k in g:
        np.testing.assert_allclose(np.asarray(clipped[k], np.float64), theirs[k],
                                   rtol=RTOL[precision], atol=1e-30)  # fmt: skip
    total = jaxsched.get_total_norm({k: jnp.asarray(v, dtype) for k, v in g.items()}, norm_type)
    assert float(total) == pytest.approx(their_total, rel=RTOL[precision])


def test_the_coefficient_is_applied_even_unclipped_as_torch(x64):
    """max_norm > total: torch still multiplies by max_norm / (total + 1e-6) clamped at 1 (=1),
    and below the threshold by max_norm / (total + 1e-6) (not max_norm / total as optax)."""
    g = grads()
    total = float(jaxsched.get_total_norm(g))
    clipped, _ = jaxsched.clip_grad_norm_(g, total)  # just above the clip: coefficient < 1
    theirs, _ = torch_clip(g, total, 2.0, "float64")
    ours_optax = optax.clip_by_global_norm(total).update(g, None)[0]
    for k in g:
        np.testing.assert_allclose(clipped[k], theirs[k], rtol=1e-15)
        assert not np.array_equal(np.asarray(ours_optax[k]), theirs[k])  # optax: untouched


def test_nonfinite_norm_raises_as_torch_or_spreads():
    g = dict(grads(), b=np.array([1.0, np.inf, 0, 0, 0]))
    with pytest.raises(RuntimeError, match=r"total norm of order 2\.0 .* non-finite"):
        jaxsched.clip_grad_norm_(g, 1.0, error_if_nonfinite=True)
    with pytest.raises(Exception, match="non-finite"):  # under jit: when it runs
        jax.jit(lambda g: jaxsched.clip_grad_norm_(g, 1.0, error_if_nonfinite=True))(g)[
            1
        ].block_until_ready()
    clipped, total = jaxsched.clip_grad_norm_(g, 1.0)
    assert math.isinf(float(total))
    np.testing.assert_array_equal(np.asarray(clipped["a"]), 0.0)  # max_norm / inf


def test_none_leaves_are_skipped_and_value_clipping(x64):
    g = {"a": jnp.asarray(grads()["a"]), "frozen": None}
    clipped, total = jaxsched.clip_grad_norm_(g, 0.1)
    assert clipped["frozen"] is None
    assert float(total) == pytest.approx(float(np.linalg.norm(np.asarray(g["a"]))), rel=1e-15)
    t = torch.tensor(np.asarray(g["a"]), requires_grad=True)
    t.grad = torch.tensor(np.asarray(g["a"]))
    torch.nn.utils.clip_grad_value_([t], 0.3)
    np.testing.assert_array_equal(
        np.asarray(jaxsched.clip_grad_value_(g, 0.3)["a"]), t.grad.numpy()
    )
    assert float(jaxsched.get_total_norm({})) == 0.0


def test_chained_with_adamw_matches_torch_clip_then_step(x64):
    """The nanoGPT recipe: clip_grad_norm_(1.0) then AdamW, 50 steps, float64."""
    rng = np.random.default_rng(3)
    p0 = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    steps = [grads(i, scale=3.0) for i in range(50)]
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in p0.items()}
    opt = torch.optim.AdamW(list(tensors.values()), lr=1e-2)
    for g in steps:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        torch.nn.utils.clip_grad_norm_(list(tensors.values()), 1.0)
        opt.step()
    tx = optax.chain(jaxsched.clip_grad_norm(1.0), jaxsched.adamw(lr=1e-2))
    p, state = jax_trajectory(tx, p0, steps, "float64")
    for k, t in tensors.items():
        np.testing.assert_allclose(np.asarray(p[k]), t.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert float(state[0].total_norm) == pytest.approx(
        float(np.sqrt(sum(np.sum(v**2) for v in steps[-1].values()))), rel=1e-14
    )
    vtx = jaxsched.clip_grad_value(0.5)
    out, _ = vtx.update({"a": jnp.array([2.0, -3.0, 0.1])}, vtx.init(None))
    np.testing.assert_array_equal(np.asarray(out["a"]), [0.5, -0.5, 0.1])
