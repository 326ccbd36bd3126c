"""A user's function of the epoch (LambdaLR, MultiplicativeLR, CyclicLR's scale_fn) sees the
epoch in the run's default integer width: inside an optax transform the count is int32, and
``e / 3`` on an int32 array is float32 arithmetic even under x64 (torch: a Python int, float64)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxsched
import jaxsched.schedules as S
from tests.torch_reference import torch_lrs
from tests.transforms.harness import jax_trajectory

STEPS = 40


def hf_cosine_with_warmup(warmup, total, xp):
    """Hugging Face's get_cosine_schedule_with_warmup lambda (``xp``: math or jnp)."""

    def f(e):
        ramp = e / max(1, warmup)
        progress = (e - warmup) / max(1, total - warmup)
        cosine = 0.5 * (1.0 + xp.cos(math.pi * 2.0 * 0.5 * progress))
        floor = xp.maximum(0.0, cosine) if xp is jnp else max(0.0, cosine)
        return xp.where(e < warmup, ramp, floor) if xp is jnp else (ramp if e < warmup else floor)

    return f


CASES = {
    "lambda-hf-cosine": (
        lambda: S.lambda_lr(5e-3, hf_cosine_with_warmup(5, STEPS, jnp)),
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, hf_cosine_with_warmup(5, STEPS, math)),
    ),
    "lambda-divide": (
        lambda: S.lambda_lr(5e-3, lambda e: 1 / (e / 3 + 1)),
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1 / (e / 3 + 1)),
    ),
    "multiplicative": (
        lambda: S.multiplicative_lr(5e-3, lambda e: 1 - e / 300),
        lambda o: torch.optim.lr_scheduler.MultiplicativeLR(o, lambda e: 1 - e / 300),
    ),
    "cyclic-scale-fn": (
        lambda: S.cyclic_lr(1e-3, 5e-3, step_size_up=4, scale_fn=lambda x: 1 / (x / 7 + 1),
                            scale_mode="iterations"),
        lambda o: torch.optim.lr_scheduler.CyclicLR(
            o, 1e-3, 5e-3, step_size_up=4, scale_fn=lambda x: 1 / (x / 7 + 1),
            scale_mode="iterations", cycle_momentum=False),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_inside_a_transform_under_x64_the_lambda_computes_in_float64(case, x64):
    ours, theirs = CASES[case]
    reference, _ = torch_lrs(theirs, STEPS, base_lr=5e-3)
    # the schedule as an optax transform calls it: an int32 count, inside jit
    schedule = jax.jit(ours())
    lrs = [float(schedule(jnp.int32(k))) for k in range(STEPS + 1)]
    np.testing.assert_allclose(lrs, reference, rtol=1e-15, atol=1e-18)


def test_a_transform_running_the_schedule_matches_torch(x64):
    """The whole path: jaxsched.sgd with the Hugging Face lambda, float64, 40 steps."""
    ours, theirs = CASES["lambda-hf-cosine"]
    reference, _ = torch_lrs(theirs, STEPS, base_lr=5e-3)
    grads = [{"p": -np.ones(1)}] * STEPS
    p = jax_trajectory(jaxsched.sgd(lr=ours()), {"p": np.ones(1)}, grads, "float64")[0]
    # each step adds its lr (the gradient is -1): the parameter is 1 + the sum of torch's lrs
    np.testing.assert_allclose(float(p["p"][0]), 1 + math.fsum(reference[:STEPS]), rtol=1e-15)
