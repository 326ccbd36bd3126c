"""Hypothesis draws hyperparameters; every draw must match torch within the contract."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as L

import jaxsched.schedules as S
from tests.torch_reference import assert_matches, torch_lrs

STEPS = 150
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
lrs = st.floats(1e-4, 2.0)
gammas = st.floats(0.05, 1.0)
fractions = st.floats(0.01, 1.0)


def compare(ours, theirs, base_lr, precision, momentum=None):
    counts = jnp.arange(STEPS + 1)
    ref, ref_mom = torch_lrs(theirs, STEPS, base_lr=base_lr, momentum=momentum is not None)
    assert_matches(np.asarray(jax.vmap(ours)(counts)), ref, precision)
    if momentum is not None:
        assert_matches(np.asarray(jax.vmap(momentum)(counts)), ref_mom, precision)


@SETTINGS
@given(lr=lrs, size=st.integers(1, 40), gamma=gammas)
def test_step_lr(precision, lr, size, gamma):
    compare(S.step_lr(lr, size, gamma), lambda o: L.StepLR(o, size, gamma), lr, precision)


@SETTINGS
@given(lr=lrs, marks=st.lists(st.integers(0, STEPS), max_size=6), gamma=gammas)
def test_multistep_lr(precision, lr, marks, gamma):
    compare(
        S.multistep_lr(lr, marks, gamma), lambda o: L.MultiStepLR(o, marks, gamma), lr, precision
    )


@SETTINGS
@given(lr=lrs, gamma=st.floats(0.9, 1.0))
def test_exponential_lr(precision, lr, gamma):
    compare(S.exponential_lr(lr, gamma), lambda o: L.ExponentialLR(o, gamma), lr, precision)


@SETTINGS
@given(lr=lrs, factor=fractions, total=st.integers(0, 60))
def test_constant_lr(precision, lr, factor, total):
    compare(
        S.constant_lr(lr, factor, total), lambda o: L.ConstantLR(o, factor, total), lr, precision
    )


@SETTINGS
@given(lr=lrs, start=fractions, end=st.one_of(st.just(0.0), fractions), total=st.integers(1, 200))
def test_linear_lr(precision, lr, start, end, total):
    compare(
        S.linear_lr(lr, start, end, total),
        lambda o: L.LinearLR(o, start, end, total),
        lr,
        precision,
    )


@SETTINGS
@given(lr=lrs, total=st.integers(1, 200), power=st.floats(0.0, 4.0))
def test_polynomial_lr(precision, lr, total, power):
    compare(
        S.polynomial_lr(lr, total, power),
        lambda o: L.PolynomialLR(o, total, power),
        lr,
        precision,
    )


@SETTINGS
@given(lr=lrs, t_max=st.integers(1, 100), eta_frac=st.floats(0.0, 0.5))
def test_cosine_annealing_lr(precision, lr, t_max, eta_frac):
    eta = lr * eta_frac
    compare(
        S.cosine_annealing_lr(lr, t_max, eta),
        lambda o: L.CosineAnnealingLR(o, t_max, eta),
        lr,
        precision,
    )


@SETTINGS
@given(lr=lrs, t_0=st.integers(1, 30), t_mult=st.integers(1, 4), eta_frac=st.floats(0.0, 0.5))
def test_cosine_annealing_warm_restarts(precision, lr, t_0, t_mult, eta_frac):
    eta = lr * eta_frac
    compare(
        S.cosine_annealing_warm_restarts(lr, t_0, t_mult, eta),
        lambda o: L.CosineAnnealingWarmRestarts(o, t_0, t_mult, eta),
        lr,
        precision,
    )


@SETTINGS
@given(
    base=st.floats(0.0, 0.1),
    span=st.floats(1e-3, 1.0),
    up=st.integers(1, 40),
    down=st.one_of(st.none(), st.integers(0, 40)),
    mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
    gamma=st.floats(0.98, 1.0),
)
def test_cyclic_lr(precision, base, span, up, down, mode, gamma):
    peak = base + span
    kw = dict(step_size_up=up, step_size_down=down, mode=mode, gamma=gamma)
    compare(
        S.cyclic_lr(base, peak, **kw),
        lambda o: L.CyclicLR(o, base, peak, **kw),
        base,
        precision,
        momentum=S.cyclic_momentum(base, peak, **kw),
    )


@SETTINGS
@given(
    peak=lrs,
    total=st.integers(2, STEPS),
    pct=st.floats(0.05, 0.95),
    strategy=st.sampled_from(["cos", "linear"]),
    three=st.booleans(),
    div=st.floats(1.0, 100.0),
    final_div=st.floats(1.0, 1e5),
)
def test_one_cycle_lr(precision, peak, total, pct, strategy, three, div, final_div):
    kw = dict(
        total_steps=total,
        pct_start=pct,
        anneal_strategy=strategy,
        three_phase=three,
        div_factor=div,
        final_div_factor=final_div,
    )
    try:
        ours = S.one_cycle_lr(peak, **kw)
    except ValueError:
        assert pct * total - 1 == 0 or 2 * pct * total - 2 == pct * total - 1
        return
    counts = jnp.arange(total)  # torch's valid steps 0..T-1
    ref, ref_mom = torch_lrs(lambda o: L.OneCycleLR(o, peak, **kw), total - 1, momentum=True)
    assert_matches(np.asarray(jax.vmap(ours)(counts)), ref, precision)
    momentum = S.one_cycle_momentum(peak, **kw)
    assert_matches(np.asarray(jax.vmap(momentum)(counts)), ref_mom, precision)


@pytest.mark.parametrize("n", [1, 3, 7])
@SETTINGS
@given(count=st.integers(0, 10_000))
def test_steps_per_epoch_divides_the_count(n, count):
    """With steps_per_epoch=n, schedule(count) is the epoch schedule at count // n."""
    pairs = [
        (S.step_lr(0.1, 3, 0.5, steps_per_epoch=n), S.step_lr(0.1, 3, 0.5)),
        (
            S.cosine_annealing_lr(0.1, 10, steps_per_epoch=n),
            S.cosine_annealing_lr(0.1, 10),
        ),
        (
            S.lambda_lr(0.1, lambda e: 1 / (1 + e), steps_per_epoch=n),
            S.lambda_lr(0.1, lambda e: 1 / (1 + e)),
        ),
    ]
    for per_step, per_epoch in pairs:
        assert float(per_step(count)) == float(per_epoch(count // n))
