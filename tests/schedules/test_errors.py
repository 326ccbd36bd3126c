"""Bad arguments fail at the factory, with torch's exception type and a message naming them."""

from __future__ import annotations

import math

import pytest

import jaxsched.schedules as S

ok = S.step_lr(0.1, 3)

# (factory call, exception type, regex that must appear in the message)
BAD = [
    (lambda: S.step_lr(-0.1, 3), ValueError, r"base_lr.*-0\.1"),
    (lambda: S.step_lr(math.nan, 3), ValueError, r"base_lr.*nan"),
    (lambda: S.step_lr("0.1", 3), ValueError, r"base_lr.*'0\.1'"),
    (lambda: S.step_lr(0.1, 0), ValueError, r"positive integer step_size.*0"),
    (lambda: S.step_lr(0.1, -2), ValueError, r"step_size.*-2"),
    (lambda: S.step_lr(0.1, 2.5), ValueError, r"integer step_size.*2\.5"),
    (lambda: S.step_lr(0.1, 3, math.inf), ValueError, r"gamma.*inf"),
    (lambda: S.step_lr(0.1, 3, steps_per_epoch=0), ValueError, r"steps_per_epoch.*0"),
    (lambda: S.multistep_lr(0.1, [3, -1]), ValueError, r"milestones.*-1"),
    (lambda: S.multistep_lr(0.1, [3, 4.5]), ValueError, r"milestones.*4\.5"),
    (lambda: S.multistep_lr(0.1, 5), ValueError, r"milestones.*5"),
    (lambda: S.constant_lr(0.1, 1.5), ValueError, r"between 0 and 1.*factor=1\.5"),
    (lambda: S.constant_lr(0.1, -0.1), ValueError, r"factor=-0\.1"),
    (lambda: S.constant_lr(0.1, 0.0, 5), ValueError, r"factor=0\.0.*total_iters=5"),
    (lambda: S.constant_lr(0.1, 0.5, -1), ValueError, r"total_iters.*-1"),
    (lambda: S.linear_lr(0.1, 0.0), ValueError, r"Starting.*start_factor=0\.0"),
    (lambda: S.linear_lr(0.1, 1.5), ValueError, r"start_factor=1\.5"),
    (lambda: S.linear_lr(0.1, 0.5, 1.5), ValueError, r"Ending.*end_factor=1\.5"),
    (lambda: S.linear_lr(0.1, 0.5, 1.0, 0), ValueError, r"positive integer total_iters.*0"),
    (lambda: S.exponential_lr(0.1, math.nan), ValueError, r"gamma.*nan"),
    (lambda: S.polynomial_lr(0.1, 0), ValueError, r"total_iters.*0"),
    (lambda: S.polynomial_lr(0.1, 5, -1.0), ValueError, r"power.*-1\.0"),
    (lambda: S.cosine_annealing_lr(0.1, 0), ValueError, r"T_max.*0"),
    (lambda: S.cosine_annealing_lr(0.1, -10), ValueError, r"T_max.*-10"),
    (lambda: S.cosine_annealing_lr(0.1, 10, "0"), ValueError, r"eta_min.*'0'"),
    (lambda: S.cosine_annealing_warm_restarts(0.1, 0), ValueError, r"positive integer T_0.*0"),
    (lambda: S.cosine_annealing_warm_restarts(0.1, 2.5), ValueError, r"T_0.*2\.5"),
    (lambda: S.cosine_annealing_warm_restarts(0.1, 2, 0), ValueError, r"T_mult.*0"),
    (lambda: S.cosine_annealing_warm_restarts(0.1, 2, 1.5), ValueError, r"T_mult.*1\.5"),
    (lambda: S.cosine_annealing_warm_restarts(0.1, 2, 1, "0"), ValueError, r"eta_min.*'0'"),
    (lambda: S.cyclic_lr(0.01, 0.1, 0), ValueError, r"step_size_up.*0"),
    (lambda: S.cyclic_lr(0.01, 0.1, 5, -1), ValueError, r"step_size_down.*-1"),
    (lambda: S.cyclic_lr(0.01, 0.1, mode="foo"), ValueError, r"mode is invalid.*'foo'"),
    (lambda: S.cyclic_lr(-0.01, 0.1), ValueError, r"base_lr.*-0\.01"),
    (lambda: S.cyclic_lr(0.01, -0.1), ValueError, r"max_lr.*-0\.1"),
    (
        lambda: S.cyclic_lr(0.01, 0.1, scale_fn=lambda x: 1.0, scale_mode="epochs"),
        ValueError,
        r"scale_mode.*'epochs'",
    ),
    (lambda: S.cyclic_momentum(0.01, 0.1, base_momentum=math.nan), ValueError, r"base_momentum"),
    (lambda: S.one_cycle_lr(0.1), ValueError, r"either total_steps OR \(epochs AND"),
    (lambda: S.one_cycle_lr(0.1, epochs=3), ValueError, r"either total_steps"),
    (lambda: S.one_cycle_lr(0.1, 0), ValueError, r"positive integer total_steps, but got 0"),
    (lambda: S.one_cycle_lr(0.1, 10.0), ValueError, r"total_steps, but got 10\.0"),
    (lambda: S.one_cycle_lr(0.1, epochs=0, steps_per_epoch=3), ValueError, r"epochs, but got 0"),
    (lambda: S.one_cycle_lr(0.1, epochs=2, steps_per_epoch=0), ValueError, r"steps_per_epoch"),
    (lambda: S.one_cycle_lr(0.1, 10, pct_start=1), ValueError, r"pct_start, but got 1$"),
    (lambda: S.one_cycle_lr(0.1, 10, pct_start=1.5), ValueError, r"pct_start, but got 1\.5"),
    (lambda: S.one_cycle_lr(0.1, 10, pct_start=0.1), ValueError, r"zero length.*pct_start=0\.1"),
    (lambda: S.one_cycle_lr(0.1, 10, anneal_strategy="foo"), ValueError, r"instead got 'foo'"),
    (lambda: S.one_cycle_lr(0.1, 10, div_factor=0.0), ValueError, r"div_factor=0\.0"),
    (lambda: S.one_cycle_lr(0.1, 10, final_div_factor=-1.0), ValueError, r"final_div_factor"),
    (lambda: S.one_cycle_momentum(0.1, 10, max_momentum=None), ValueError, r"max_momentum"),
    (lambda: S.sequential_lr([], []), ValueError, r"at least one scheduler"),
    (lambda: S.sequential_lr([ok, ok], [3, 4]), ValueError, r"schedulers 2 .* equal to 2"),
    (lambda: S.sequential_lr([ok, ok, ok], [5, 3]), ValueError, r"non-decreasing.*\[5, 3\]"),
    (lambda: S.sequential_lr([ok, ok], [-1]), ValueError, r"milestones.*-1"),
    (lambda: S.sequential_lr([ok, 0.1], [3]), TypeError, r"index 1 is float"),
    (lambda: S.chained_lr(0.1), ValueError, r"at least one scheduler to be chained"),
    (lambda: S.chained_lr(0.1, ok, "x"), TypeError, r"index 1 is str"),
    (lambda: S.lambda_lr(0.1, 0.5), TypeError, r"lr_lambda should be a function, but got float"),
    (lambda: S.multiplicative_lr(0.1, None), TypeError, r"lr_lambda should be a function"),
]


@pytest.mark.parametrize("call, exc, pattern", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_argument_raises_at_factory(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def python_only(e):
    if e < 5:  # branches on a traced value
        return 1.0
    return 0.5


@pytest.mark.parametrize(
    "factory", [S.lambda_lr, S.multiplicative_lr], ids=["lambda_lr", "multiplicative_lr"]
)
@pytest.mark.parametrize("fn", [python_only, lambda e: math.cos(e)], ids=["if", "math.cos"])
def test_untraceable_lambda_gives_a_short_clear_error(factory, fn):
    with pytest.raises(TypeError, match=r"lr_lambda must be traceable by JAX") as info:
        factory(0.1, fn)
    message = str(info.value)
    assert "jnp" in message and len(message) < 1000
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_lambda_must_return_a_scalar():
    import jax.numpy as jnp

    with pytest.raises(ValueError, match=r"lr_lambda must return a scalar"):
        S.lambda_lr(0.1, lambda e: jnp.ones(3) * e)


def test_custom_scale_fn_is_checked():
    with pytest.raises(TypeError, match=r"scale_fn must be traceable"):
        S.cyclic_lr(0.01, 0.1, scale_fn=python_only)
