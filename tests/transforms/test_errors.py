"""Bad hyperparameters raise torch's exception type and message, naming the value."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxsched as J

BAD = [
    (lambda: J.sgd(lr=-1.0), ValueError, r"^Invalid learning rate: -1\.0$"),
    (lambda: J.sgd(lr=0.1, momentum=-0.5), ValueError, r"^Invalid momentum value: -0\.5$"),
    (lambda: J.sgd(lr=0.1, weight_decay=-1.0), ValueError, r"^Invalid weight_decay value: -1\.0"),
    (lambda: J.sgd(lr=0.1, nesterov=True), ValueError, r"Nesterov momentum requires a momentum"),
    (
        lambda: J.sgd(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
        ValueError,
        r"zero dampening",
    ),
    (lambda: J.sgd(lr=float("nan")), ValueError, r"Invalid learning rate: nan"),
    # torch's message (a multi-element Tensor lr), with the shape
    (
        lambda: J.sgd(lr=jnp.ones(2)),
        ValueError,
        r"^Tensor lr must be 1-element \(got shape \(2,\)\)",
    ),
    (lambda: J.adam(lr=np.ones((1, 2))), ValueError, r"^Tensor lr must be 1-element"),
    (lambda: J.muon(lr=jnp.ones(3)), ValueError, r"^Tensor lr must be 1-element"),
    (
        lambda: J.adam(betas=(0.9, jnp.asarray(0.999))),
        ValueError,
        "betas must be either both floats or both Tensors",
    ),
    (
        lambda: J.adamw(betas=(0, 0.999)),
        ValueError,
        "betas must be either both floats or both Tensors",
    ),
    (lambda: J.adam(eps=-1.0), ValueError, r"^Invalid epsilon value: -1\.0$"),
    (lambda: J.adam(betas=(1.0, 0.999)), ValueError, r"^Invalid beta parameter at index 0: 1\.0"),
    (lambda: J.adam(betas=(0.9, -0.1)), ValueError, r"^Invalid beta parameter at index 1: -0\.1"),
    (lambda: J.adam(betas=0.9), ValueError, r"betas to be a pair"),
    (lambda: J.adam(weight_decay=-1.0), ValueError, r"Invalid weight_decay value: -1\.0"),
    (lambda: J.adamw(weight_decay=-0.1), ValueError, r"Invalid weight_decay value: -0\.1"),
    (lambda: J.adam(fused=True, foreach=True), RuntimeError, r"`fused` and `foreach` cannot"),
    (lambda: J.sgd(fused=True, differentiable=True), RuntimeError, r"does not support"),
    (lambda: J.adagrad(lr_decay=-1.0), ValueError, r"^Invalid lr_decay value: -1\.0"),
    (
        lambda: J.adagrad(initial_accumulator_value=-1.0),
        ValueError,
        r"^Invalid initial_accumulator_value value: -1\.0",
    ),
    (lambda: J.adagrad(eps=-1.0), ValueError, r"Invalid epsilon value: -1\.0"),
    (lambda: J.adadelta(rho=1.5), ValueError, r"^Invalid rho value: 1\.5"),
    (lambda: J.adamax(betas=(0.9, 1.0)), ValueError, r"index 1: 1\.0"),
    (lambda: J.rmsprop(alpha=-0.1), ValueError, r"^Invalid alpha value: -0\.1"),
    (lambda: J.rmsprop(momentum=-1.0), ValueError, r"^Invalid momentum value: -1\.0"),
    (lambda: J.rprop(etas=(1.5, 1.2)), ValueError, r"^Invalid eta values: 1\.5, 1\.2"),
    (lambda: J.rprop(step_sizes=(1.0, 0.1)), ValueError, r"Invalid step_sizes values: 1\.0, 0\.1"),
    (lambda: J.nadam(momentum_decay=-1.0), ValueError, r"^Invalid momentum_decay value: -1\.0"),
    (lambda: J.radam(betas=(-0.1, 0.9)), ValueError, r"index 0: -0\.1"),
    (lambda: J.asgd(weight_decay=-1.0), ValueError, r"Invalid weight_decay value: -1\.0"),
    (lambda: J.asgd(lr=-0.1), ValueError, r"Invalid learning rate: -0\.1"),
    (lambda: J.adafactor(beta2_decay=0.5), ValueError, r"beta2_decay should be <= 0 but is: 0\.5"),
    (lambda: J.adafactor(d=-1.0), ValueError, r"Clipping threshold d should be >= 1 but is: -1"),
    (lambda: J.adafactor(eps=(-1.0, 1e-3)), ValueError, r"epsilon1 should be >= 0 but is: -1"),
    (lambda: J.adafactor(weight_decay=-1.0), ValueError, r"weight_decay should be >= 0"),
]


@pytest.mark.parametrize("call, exc, pattern", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_hyperparameter(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize(
    "flags",
    [
        dict(foreach=True),
        dict(fused=True),
        dict(differentiable=True),
        dict(capturable=True, foreach=False),
    ],
)
def test_implementation_flags_are_accepted_and_change_nothing(flags):
    import jax

    p = {"w": jnp.arange(3.0)}
    g = {"w": jnp.asarray([0.5, -1.0, 2.0])}
    plain = J.adam(lr=0.1)
    flagged = J.adam(lr=0.1, **flags)
    a, _ = plain.update(g, plain.init(p), p)
    b, _ = flagged.update(g, flagged.init(p), p)
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b))


def test_schedule_and_array_lr_are_accepted():
    """A schedule and an array lr are accepted and used: SGD's step k moves by lr(k) * g."""
    params, grads = {"w": jnp.ones(2)}, {"w": jnp.full(2, 2.0)}
    tx = J.sgd(lr=lambda count: 0.1 / (1 + count))
    state = tx.init(params)
    for k in range(3):
        updates, state = tx.update(grads, state, params)
        np.testing.assert_allclose(updates["w"], -0.1 / (1 + k) * 2.0, rtol=1e-6)
    tx = J.adam(lr=jnp.asarray(0.01))
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.01, rtol=1e-5)  # Adam's first step: -lr*sign
