"""Schedules as JAX users use them: jit, vmap, int32/int64 counts, huge counts, inside optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsched.schedules as S

FACTORIES = {
    "lambda_lr": lambda: S.lambda_lr(0.1, lambda e: 1.0 / (1.0 + e)),
    "multiplicative_lr": lambda: S.multiplicative_lr(0.1, lambda e: 0.5 + 0.1 / (1 + e)),
    "multiplicative_lr-const": lambda: S.multiplicative_lr(0.1, lambda e: 0.97),
    "step_lr": lambda: S.step_lr(0.1, 30),
    "multistep_lr": lambda: S.multistep_lr(0.1, [30, 80, 2**40]),
    "constant_lr": lambda: S.constant_lr(0.1),
    "linear_lr": lambda: S.linear_lr(0.1),
    "exponential_lr": lambda: S.exponential_lr(0.1, 0.95),
    "exponential_lr-one": lambda: S.exponential_lr(0.1, 1.0),
    "exponential_lr-negative": lambda: S.exponential_lr(0.1, -0.5),
    "polynomial_lr": lambda: S.polynomial_lr(0.1, 100, 0.9),
    "cosine_annealing_lr": lambda: S.cosine_annealing_lr(0.1, 100, 1e-4),
    "cosine_annealing_lr-huge-T": lambda: S.cosine_annealing_lr(0.1, 2**31),
    "cosine_annealing_lr-float-T": lambda: S.cosine_annealing_lr(0.1, 7.5),
    "cosine_annealing_warm_restarts": lambda: S.cosine_annealing_warm_restarts(0.1, 10, 2),
    "cosine_annealing_warm_restarts-1": lambda: S.cosine_annealing_warm_restarts(0.1, 10),
    "cyclic_lr": lambda: S.cyclic_lr(0.01, 0.1, 20, mode="exp_range", gamma=0.999),
    "cyclic_lr-float": lambda: S.cyclic_lr(0.01, 0.1, 2.5, mode="triangular2"),
    "cyclic_momentum": lambda: S.cyclic_momentum(0.01, 0.1, 20),
    "one_cycle_lr": lambda: S.one_cycle_lr(0.1, total_steps=1000),
    "one_cycle_momentum": lambda: S.one_cycle_momentum(0.1, total_steps=1000, three_phase=True),
    "sequential_lr": lambda: S.sequential_lr(
        [S.linear_lr(0.1, 0.01, 1.0, 10), S.cosine_annealing_lr(0.1, 90)], [10]
    ),
    "chained_lr": lambda: S.chained_lr(0.1, S.linear_lr(1.0), S.exponential_lr(1.0, 0.9)),
}
IDS = list(FACTORIES)
COUNTS = [0, 1, 2, 5, 99, 100, 1000, 2**24 + 1, 2**31 - 2, 2**31 - 1]


@pytest.mark.parametrize("name", IDS)
def test_jit_vmap_and_huge_counts(name, precision):
    schedule = FACTORIES[name]()
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    for int_dtype in (jnp.int32, jnp.int64) if precision == "float64" else (jnp.int32,):
        counts = jnp.asarray(COUNTS, int_dtype)
        batched = jax.jit(jax.vmap(schedule))(counts)
        assert batched.shape == counts.shape
        assert batched.dtype == dtype
        assert np.all(np.isfinite(np.asarray(batched))), f"{name}: {batched}"
        # Scalar calls, jitted and eager, agree with the vmapped values (at counts that float32
        # represents exactly; beyond 2**24 only finiteness is promised).
        jitted = jax.jit(schedule)
        for i in (0, 3, 6):
            assert jitted(counts[i]).shape == ()
            np.testing.assert_allclose(jitted(counts[i]), batched[i], rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(schedule(int(counts[i])), batched[i], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", ["step_lr", "cosine_annealing_lr", "one_cycle_lr", "cyclic_lr"])
def test_grad_through_nothing_and_python_int(name):
    schedule = FACTORIES[name]()
    assert float(schedule(3)) == float(schedule(jnp.int32(3)))
    assert float(schedule(3.7)) == float(schedule(3))  # float counts are floored


def _train(tx, steps=5):
    params = {"w": jnp.ones(3)}
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.tree.map(lambda p: 2 * p, params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def test_inside_optax_adam_chain_and_inject_hyperparams():
    schedule = S.step_lr(0.1, 2, 0.5)
    # optax evaluates the schedule at the pre-increment count: lrs 0.1, 0.1, 0.05, 0.05, 0.025.
    params, _ = _train(optax.sgd(learning_rate=schedule))
    expected = 1.0
    for lr in (0.1, 0.1, 0.05, 0.05, 0.025):
        expected -= lr * 2 * expected
    np.testing.assert_allclose(params["w"], expected, rtol=1e-6)

    _train(optax.adam(learning_rate=S.cosine_annealing_lr(1e-3, 10)))
    _train(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(S.one_cycle_lr(0.1, 100))))

    injected = optax.inject_hyperparams(optax.sgd)(learning_rate=S.exponential_lr(0.1, 0.5))
    _, state = _train(injected, steps=3)
    np.testing.assert_allclose(state.hyperparams["learning_rate"], 0.1 * 0.5**2, rtol=1e-6)


def test_scale_by_schedule_and_momentum_companion():
    momentum = S.one_cycle_momentum(0.1, total_steps=10)
    tx = optax.inject_hyperparams(optax.sgd)(
        learning_rate=S.one_cycle_lr(0.1, total_steps=10), momentum=momentum
    )
    _, state = _train(tx, steps=4)
    np.testing.assert_allclose(state.hyperparams["momentum"], momentum(3), rtol=1e-6)
    _train(
        optax.chain(
            optax.scale_by_adam(), optax.scale_by_schedule(S.linear_lr(0.1)), optax.scale(-1)
        )
    )


def test_no_recompilation_across_counts():
    schedule = jax.jit(S.cosine_annealing_warm_restarts(0.1, 3, 2))
    schedule(jnp.int32(0))
    before = schedule._cache_size()
    for k in range(50):
        schedule(jnp.int32(k))
    assert schedule._cache_size() == before


def test_returns_scalar_array_of_default_float(precision):
    out = S.step_lr(0.1, 3)(jnp.int32(4))
    assert isinstance(out, jax.Array)
    assert out.dtype == (jnp.float64 if precision == "float64" else jnp.float32)
