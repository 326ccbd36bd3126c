"""``jaxsched.current_value``: the learning rate a jitted functional loop logs equals torch's
``group["lr"]`` read before each ``optimizer.step()`` (float64, exactly)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
import pytest
import torch

import jaxsched
from jaxsched import schedules

STEPS, WARMUP = 12, 3


def warmup_cosine(step):  # Hugging Face's get_cosine_schedule_with_warmup lambda
    if step < WARMUP:
        return step / max(1, WARMUP)
    progress = (step - WARMUP) / max(1, STEPS - WARMUP)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def torch_lrs():
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.AdamW([p], lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
    lrs = []
    for _ in range(STEPS):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
    return lrs


def test_logged_lr_inside_jit_equals_torchs(x64):
    def hf(step):
        progress = (step - WARMUP) / max(1, STEPS - WARMUP)
        cosine = jnp.maximum(0.0, 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
        return jnp.where(step < WARMUP, step / max(1, WARMUP), cosine)

    schedule = schedules.lambda_lr(3e-3, hf)
    tx = optax.chain(jaxsched.clip_grad_norm(1.0), jaxsched.adamw(schedule))
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        lr = jaxsched.current_value(schedule, state)  # the lr this update uses
        updates, state = tx.update({"w": jnp.ones(2)}, state, params)
        return optax.apply_updates(params, updates), state, lr

    logged = []
    for _ in range(STEPS):
        params, state, lr = step(params, state)
        logged.append(float(lr))
    assert logged == pytest.approx(torch_lrs(), rel=1e-15, abs=0)


def test_grouped_state_names_its_group():
    schedule = schedules.step_lr(0.1, 2, 0.5)
    tx = jaxsched.grouped(
        {"a": jaxsched.sgd, "b": jaxsched.adam}, {"x": "a", "y": "b"},
        {"a": {"lr": schedule}, "b": {"lr": 0.01}},
    )  # fmt: skip
    params = {"x": jnp.ones(2), "y": jnp.ones(2)}
    state = tx.init(params)
    for _ in range(3):
        _, state = tx.update(params, state, params)
    assert float(jaxsched.current_value(schedule, state, group="a")) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="name the group"):
        jaxsched.current_value(schedule, state)
    with pytest.raises(KeyError, match="no parameter group 'c'"):
        jaxsched.current_value(schedule, state, group="c")


def test_per_parameter_state_is_refused():
    tx = jaxsched.per_parameter(jaxsched.sgd(0.1))
    state = tx.init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="per parameter"):
        jaxsched.current_value(0.1, state)
