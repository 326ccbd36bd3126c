"""``jaxsched.amp`` against ``torch.amp.GradScaler(device="cpu")``: the same gradients (some
with inf / NaN) through both, the scale, growth tracker, skipped steps and parameters equal."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxsched
from jaxsched import amp, optim

STEPS = 12
SHAPES = {"w": (3, 2), "b": (2,)}
BAD = {2: np.inf, 3: np.nan, 7: -np.inf}  # step -> a value planted in the gradient
KWARGS = dict(init_scale=1024.0, growth_factor=3.0, backoff_factor=0.25, growth_interval=3)


def _grads():
    rng = np.random.default_rng(0)
    out = []
    for step in range(STEPS):
        g = {
            "w": rng.normal(size=(3, 2)).astype(np.float32),
            "b": rng.normal(size=2).astype(np.float32),
        }
        if step in BAD:
            g["w"][1, 1] = BAD[step]
        out.append(g)
    return out


def _torch_run(clip: bool):
    rng = np.random.default_rng(1)
    p0 = {
        "w": rng.normal(size=(3, 2)).astype(np.float32),
        "b": rng.normal(size=2).astype(np.float32),
    }
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in p0.items()}
    opt = torch.optim.Adam(list(tensors.values()), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", **KWARGS)
    scales, trackers = [], []
    for g in _grads():
        for k, t in tensors.items():
            t.grad = scaler.scale(torch.tensor(g[k]))  # what backward of the scaled loss gives
        if clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(list(tensors.values()), 1.0)
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        trackers.append(scaler.state_dict()["_growth_tracker"])
    return p0, {k: t.detach().numpy() for k, t in tensors.items()}, scales, trackers, scaler


@pytest.mark.parametrize("clip", [False, True])
def test_grad_scaler_matches_torch(clip):
    p0, theirs, their_scales, their_trackers, their_scaler = _torch_run(clip)
    opt = optim.Adam(jax.tree.map(jnp.asarray, p0), lr=0.01)
    scaler = amp.GradScaler("cpu", **KWARGS)
    scales, trackers = [], []
    for g in _grads():
        grads = jax.tree.map(lambda x: scaler.scale(jnp.asarray(x)), g)
        if clip:
            grads = scaler.unscale_(opt, grads)
            grads, _ = jaxsched.clip_grad_norm_(grads, 1.0)
        scaler.step(opt, grads)
        scaler.update()
        scales.append(scaler.get_scale())
        trackers.append(scaler.state_dict()["_growth_tracker"])
    assert scales == their_scales
    assert trackers == their_trackers
    for k in p0:
        np.testing.assert_allclose(np.asarray(opt.params[k]), theirs[k], rtol=1e-6, atol=1e-7)
    assert scaler.state_dict() == their_scaler.state_dict()


def test_functional_loss_scaling_matches_the_scaler():
    p0, theirs, their_scales, _, _ = _torch_run(False)
    tx = amp.loss_scaling(jaxsched.adam(0.01), **KWARGS)
    params = jax.tree.map(jnp.asarray, p0)
    state = tx.init(params)

    @jax.jit
    def step(params, state, g):
        scaled = jax.tree.map(lambda x: x * state.scale, g)  # grads of loss * scale
        updates, state = tx.update(scaled, state, params)
        return optax.apply_updates(params, updates), state

    scales = []
    for g in _grads():
        params, state = step(params, state, jax.tree.map(jnp.asarray, g))
        scales.append(float(state.scale))
    assert scales == their_scales
    for k in p0:
        np.testing.assert_allclose(np.asarray(params[k]), theirs[k], rtol=1e-6, atol=1e-7)


def test_state_dicts_both_ways_and_torchs_errors():
    _, _, _, _, their_scaler = _torch_run(False)
    scaler = amp.GradScaler("cpu")
    scaler.load_state_dict(their_scaler.state_dict())
    assert scaler.state_dict() == their_scaler.state_dict()
    back = torch.amp.GradScaler("cpu")
    back.load_state_dict(scaler.state_dict())
    assert back.state_dict() == scaler.state_dict()

    opt = optim.SGD({"w": jnp.ones(2)}, lr=0.1)
    grads = {"w": jnp.ones(2)}
    scaler.unscale_(opt, grads)
    with pytest.raises(RuntimeError, match=r"unscale_\(\) has already been called"):
        scaler.unscale_(opt, grads)
    scaler.step(opt, grads)
    with pytest.raises(RuntimeError, match=r"step\(\) has already been called"):
        scaler.step(opt, grads)
    with pytest.raises(RuntimeError, match=r"unscale_\(\) is being called after step\(\)"):
        scaler.unscale_(opt, grads)
    scaler.update()
    with pytest.raises(AssertionError, match="No inf checks were recorded prior to update"):
        scaler.update()
    with pytest.raises(AssertionError, match=r"The growth factor must be > 1.0."):
        amp.GradScaler(growth_factor=1.0)
    with pytest.raises(AssertionError, match=r"The backoff factor must be < 1.0."):
        amp.GradScaler(backoff_factor=1.0)
    with pytest.raises(ValueError, match=r"Attempting to unscale FP16 gradients\."):
        amp.GradScaler().unscale_(opt, {"w": jnp.ones(2, jnp.float16)})
    with pytest.raises(RuntimeError, match="The source state dict is empty"):
        amp.GradScaler().load_state_dict({})


def test_a_disabled_scaler_passes_through():
    scaler = amp.GradScaler(enabled=False)
    opt = optim.SGD({"w": jnp.ones(2)}, lr=0.1)
    assert scaler.scale(jnp.float32(3.0)) == 3.0
    scaler.step(opt, {"w": jnp.ones(2)})
    scaler.update()
    np.testing.assert_allclose(opt.params["w"], 0.9)
    assert scaler.get_scale() == 1.0 and scaler.state_dict() == {}
