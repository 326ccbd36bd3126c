"""jaxsched.grouped: per-group hyperparameters held in the optax state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest
import torch

import jaxsched
from tests.optim.harness import TorchTwin, flat, make_tree, random_grads, two_groups
from tests.torch_reference import OPTIM_RTOL, relative_difference

LABELS = {
    "features": {"conv": "features", "bias": "features"},
    "classifier": {"w": "head", "b": "head"},
}


def test_two_groups_in_an_optax_chain_match_torch(precision):
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    tree = make_tree()
    tx = optax.chain(
        optax.identity(),
        jaxsched.grouped(
            jaxsched.adam,
            LABELS,
            {"features": {}, "head": {"lr": 1e-3, "amsgrad": True}},
            lr=1e-2,
            betas=(0.8, 0.99),
        ),
    )
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    theirs = TorchTwin(
        torch.optim.Adam,
        two_groups(tree, {"lr": 1e-3, "amsgrad": True}),
        dtype=getattr(torch, precision),
        lr=1e-2,
        betas=(0.8, 0.99),
    )
    for g in random_grads(4, 100):
        params, state = step(params, state, jax.tree.map(lambda x: jnp.asarray(x, dtype), g))
        theirs.step(g)
    assert relative_difference(flat(params), theirs.params()) <= OPTIM_RTOL[precision]
    hyper = jaxsched.get_hyperparams(state)
    assert float(hyper["head"]["lr"]) == pytest.approx(1e-3)
    assert float(hyper["features"]["betas"][0]) == pytest.approx(0.8)
    assert set(hyper["head"]) >= {"lr", "betas", "eps", "weight_decay"}  # torch's defaults too


def test_set_hyperparams_inside_jit_never_recompiles():
    params = jax.tree.map(jnp.asarray, make_tree())
    labels = lambda p: jax.tree.map(lambda _: "all", p)  # noqa: E731 - a label function
    tx = jaxsched.grouped(jaxsched.sgd, labels, {"all": {}}, lr=0.1, momentum=0.9)
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads, lr):
        state = jaxsched.set_hyperparams(state, "all", lr=lr)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for i, g in enumerate(random_grads(5, 10)):
        params, state = step(params, state, jax.tree.map(jnp.asarray, g), 0.1 / (i + 1))
    assert step._cache_size() == 1
    assert float(jaxsched.get_hyperparams(state)["all"]["lr"]) == pytest.approx(0.01)


def test_errors_name_the_problem():
    params = jax.tree.map(jnp.asarray, make_tree())
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        jaxsched.grouped(jaxsched.sgd, LABELS, {"features": {}, "head": {"lr": -1.0}}, lr=0.1)
    tx = jaxsched.grouped(jaxsched.sgd, LABELS, {"features": {}}, lr=0.1)
    with pytest.raises(ValueError, match="no hyperparameters: 'head'"):
        tx.init(params)
    with pytest.raises(ValueError, match="structure of the parameters"):
        jaxsched.grouped(jaxsched.sgd, {"a": "x"}, {"x": {}}, lr=0.1).init(params)
    tx = jaxsched.grouped(jaxsched.adam, LABELS, {"features": {}, "head": {}})
    state = tx.init(params)
    with pytest.raises(KeyError, match="no parameter group 'nope'"):
        jaxsched.set_hyperparams(state, "nope", lr=0.1)
    with pytest.raises(ValueError, match="'amsgrad' is not a numeric hyperparameter"):
        jaxsched.set_hyperparams(state, "head", amsgrad=True)
    with pytest.raises(ValueError, match="betas expects 2 values"):
        jaxsched.set_hyperparams(state, "head", betas=0.9)
    with pytest.raises(ValueError, match=r"exactly one jaxsched\.grouped state"):
        jaxsched.get_hyperparams(optax.sgd(0.1).init(params))
