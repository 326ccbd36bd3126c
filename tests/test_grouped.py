"""jaxsched.grouped: per-group hyperparameters held in the optax state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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


def test_a_factory_per_group_matches_two_torch_optimizers(precision):
    """torch's "two optimizers on one model" (SGD on the features, Adam on the head) as one
    transform."""
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    tdtype = getattr(torch, precision)
    tree = make_tree()
    tx = jaxsched.grouped(
        {"features": jaxsched.sgd, "head": jaxsched.adam},
        LABELS,
        {"features": {"momentum": 0.9, "nesterov": True}, "head": {"betas": (0.8, 0.99)}},
        lr=1e-2,
        weight_decay=0.1,
    )
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    sgd = TorchTwin(
        torch.optim.SGD,
        [{"params": {"features": tree["features"]}}],
        dtype=tdtype,
        lr=1e-2,
        momentum=0.9,
        nesterov=True,
        weight_decay=0.1,
    )
    adam = TorchTwin(
        torch.optim.Adam,
        [{"params": {"classifier": tree["classifier"]}}],
        dtype=tdtype,
        lr=1e-2,
        betas=(0.8, 0.99),
        weight_decay=0.1,
    )
    for g in random_grads(7, 6):
        params, state = step(params, state, jax.tree.map(lambda x: jnp.asarray(x, dtype), g))
        sgd.step({"features": g["features"]})
        adam.step({"classifier": g["classifier"]})
    ours = flat(params)
    for name, theirs in {**sgd.params(), **adam.params()}.items():
        err = np.max(np.abs(ours[name] - theirs)) / np.max(np.abs(theirs))
        assert err <= OPTIM_RTOL[precision], name
    hyper = jaxsched.get_hyperparams(state)
    assert set(hyper["features"]) >= {"momentum", "dampening"}  # sgd's own hyperparameters
    assert set(hyper["head"]) >= {"betas", "eps"} and "momentum" not in hyper["head"]


def _repeated_scale(lr: float = 0.1, times: int = 2) -> optax.GradientTransformation:
    """A factory with a loop count: ``times`` must stay a Python int."""

    def update(updates, state, params=None):
        for _ in range(times):  # a traced ``times`` raises TypeError here
            updates = jax.tree.map(lambda u: -lr * u, updates)
        return updates, state

    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


def test_static_args_stay_python_values_and_numbers_stay_traced():
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    labels = {"a": "x", "b": "y"}
    with pytest.raises(TypeError):  # without static_args the loop count would be traced
        tx = jaxsched.grouped(_repeated_scale, labels, {"x": {}, "y": {}})
        jax.jit(tx.update)(params, tx.init(params), params)
    tx = jaxsched.grouped(
        _repeated_scale, labels, {"x": {"times": 3}, "y": {}}, static_args=("times",), lr=0.5
    )
    state = tx.init(params)
    hyper = jaxsched.get_hyperparams(state)
    assert set(hyper["x"]) == {"lr"}  # times is not in the state
    update = jax.jit(tx.update)
    out, _ = update(params, state, params)
    np.testing.assert_allclose(out["a"], -(0.5**3) * np.ones(3))  # 3 times
    np.testing.assert_allclose(out["b"], 0.5**2 * np.ones(2))  # the default, 2 times
    out, _ = update(params, jaxsched.set_hyperparams(state, "y", lr=0.25), params)
    np.testing.assert_allclose(out["b"], 0.25**2 * np.ones(2))
    assert update._cache_size() == 1  # a numeric write never recompiles
    with pytest.raises(ValueError, match="'times' is not a numeric hyperparameter"):
        jaxsched.set_hyperparams(state, "x", times=4)


def _scaled_by_value() -> optax.GradientTransformationExtraArgs:
    def update(updates, state, params=None, *, value):
        return jax.tree.map(lambda u: u * value, updates), state

    return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)


def test_extra_update_arguments_reach_every_group():
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    tx = jaxsched.grouped(
        {"x": _scaled_by_value, "y": jaxsched.sgd}, {"a": "x", "b": "y"}, {"x": {}, "y": {}}
    )
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    updates, _ = jax.jit(tx.update)(params, tx.init(params), params, value=jnp.float32(3.0))
    np.testing.assert_allclose(updates["a"], 3 * np.ones(3))  # the extra argument used
    np.testing.assert_allclose(updates["b"], -1e-3 * np.ones(2))  # sgd ignores it
    chained = optax.chain(optax.identity(), tx)
    updates, _ = chained.update(params, chained.init(params), params, value=2.0)
    np.testing.assert_allclose(updates["a"], 2 * np.ones(3))


def test_errors_of_factories_per_group_and_static_args():
    with pytest.raises(ValueError, match=r"groups without a factory: \['y'\]"):
        jaxsched.grouped({"x": jaxsched.sgd}, {"a": "x"}, {"x": {}, "y": {}})
    with pytest.raises(ValueError, match=r"factories without a group: \['z'\]"):
        jaxsched.grouped({"x": jaxsched.sgd, "z": jaxsched.adam}, {"a": "x"}, {"x": {}})
    with pytest.raises(TypeError, match=r"group 'x'.s factory sgd takes no argument 'betas'"):
        jaxsched.grouped(
            {"x": jaxsched.sgd, "y": jaxsched.adam}, {}, {"x": {}, "y": {}}, betas=(0.9, 0.9)
        )
    with pytest.raises(ValueError, match=r"static_args \['ns'\] are not arguments"):
        jaxsched.grouped(jaxsched.sgd, {}, {"x": {}}, static_args=("ns",))
