"""Hypothesis draws optimizer hyperparameters; every draw must follow torch (float64)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxsched
from tests.torch_reference import random_problem, relative_difference, torch_trajectory
from tests.transforms.harness import jax_trajectory

SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
lrs = st.floats(1e-4, 0.1)
betas = st.tuples(st.floats(0.0, 0.99), st.floats(0.5, 0.9999))
decays = st.one_of(st.just(0.0), st.floats(1e-4, 0.5))


def check(factory, cls, kwargs, steps=60):
    params, grads = random_problem(steps, seed=11)
    ref = torch_trajectory(cls, kwargs, params, grads, "float64")
    ours, _ = jax_trajectory(factory(**kwargs), params, grads, "float64")
    assert relative_difference(ours, ref) <= 1e-10, kwargs


@SETTINGS
@given(lr=lrs, momentum=st.floats(0.0, 0.99), dampening=st.floats(0.0, 0.9), wd=decays,
       nesterov=st.booleans(), maximize=st.booleans())  # fmt: skip
def test_sgd(x64, lr, momentum, dampening, wd, nesterov, maximize):
    if nesterov and (momentum == 0 or dampening != 0):
        dampening = 0.0
        momentum = max(momentum, 0.1)
    kwargs = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=wd,
                  nesterov=nesterov, maximize=maximize)  # fmt: skip
    check(jaxsched.sgd, torch.optim.SGD, kwargs)


@pytest.mark.parametrize(
    "factory, cls",
    [(jaxsched.adam, torch.optim.Adam), (jaxsched.adamw, torch.optim.AdamW),
     (jaxsched.nadam, torch.optim.NAdam), (jaxsched.radam, torch.optim.RAdam),
     (jaxsched.adamax, torch.optim.Adamax)],
    ids=["adam", "adamw", "nadam", "radam", "adamax"],
)  # fmt: skip
@SETTINGS
@given(lr=lrs, betas=betas, eps=st.floats(1e-10, 1e-3), wd=decays)
def test_adam_family(x64, factory, cls, lr, betas, eps, wd):
    check(factory, cls, dict(lr=lr, betas=betas, eps=eps, weight_decay=wd))


@SETTINGS
@given(lr=lrs, alpha=st.floats(0.5, 0.999), momentum=st.floats(0.0, 0.95),
       centered=st.booleans(), wd=decays)  # fmt: skip
def test_rmsprop(x64, lr, alpha, momentum, centered, wd):
    kwargs = dict(lr=lr, alpha=alpha, momentum=momentum, centered=centered, weight_decay=wd)
    check(jaxsched.rmsprop, torch.optim.RMSprop, kwargs)
