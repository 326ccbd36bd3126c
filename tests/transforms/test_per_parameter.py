"""``jaxsched.per_parameter``: torch's skip of parameters without gradient, functional.

Every transform of the registry (first case per optimizer in the fast lane) runs next to torch
while some parameters have ``.grad = None``, once with ``None`` leaves and once with a traced
``mask`` (one compiled program for every pattern), in float32 and float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsched
from jaxsched.transforms import per_parameter, per_parameter_factory
from tests.compile_counter import count_compiles
from tests.optimizer_cases import Case, first_case_per_optimizer
from tests.torch_reference import (
    OPTIM_RTOL,
    random_problem,
    relative_difference,
    torch_trajectory,
)
from tests.transforms.harness import JAX_DTYPES, jax_trajectory

STEPS = 6
HOLES = [{"p0"}, set(), {"p1", "p2"}, {"p0", "p1", "p2"}, {"p2"}, set()]


def _problem():
    params, grads = random_problem(STEPS, seed=3)
    holed = [{k: None if k in holes else v for k, v in g.items()} for g, holes in zip(
        grads, HOLES, strict=True)]  # fmt: skip
    return params, holed


def _masked_trajectory(tx, params, grads, dtype):
    jdtype = JAX_DTYPES[dtype]
    p = {k: jnp.asarray(v, jdtype) for k, v in params.items()}
    state = tx.init(p)

    @jax.jit
    def step(p, state, g, mask):
        updates, state = tx.update(g, state, p, mask=mask)
        return optax.apply_updates(p, updates), state

    inputs = [
        ({k: np.zeros(np.shape(params[k])) if v is None else v for k, v in g.items()},
         {k: v is not None for k, v in g.items()})
        for g in grads
    ]  # fmt: skip
    inputs = jax.tree.map(jnp.asarray, inputs)
    inputs = [({k: v.astype(jdtype) for k, v in g.items()}, m) for g, m in inputs]
    p, state = step(p, state, *inputs[0])  # compiles
    with count_compiles() as compiles:
        for g, mask in inputs[1:]:
            p, state = step(p, state, g, mask)
    assert compiles() == 0  # every pattern runs the program of the first step
    return {k: np.asarray(v, np.float64) for k, v in p.items()}, state


@pytest.mark.parametrize("case", first_case_per_optimizer())
@pytest.mark.parametrize("mode", ["none", "mask"])
def test_skips_like_torch(case: Case, mode: str, precision: str):
    params, grads = _problem()
    tx = per_parameter(case.factory(**case.kwargs))
    run = jax_trajectory if mode == "none" else _masked_trajectory
    ours, state = run(tx, params, grads, precision)
    theirs = torch_trajectory(case.torch_class, case.kwargs, params, grads, precision)
    assert relative_difference(ours, theirs) < OPTIM_RTOL[precision]
    # each parameter counted its own steps: p0 missed 2, p1 2, p2 3
    assert [int(c) for c in state.count] == [4, 4, 3]


def test_a_plain_transform_refuses_none_and_says_what_to_use():
    p = {"a": jnp.ones(2), "b": jnp.ones(2)}
    tx = jaxsched.adamw(0.1)
    with pytest.raises(ValueError, match=r"jaxsched.per_parameter"):
        tx.update({"a": None, "b": jnp.ones(2)}, tx.init(p), p)


def test_none_needs_params_for_the_zero_update():
    p = {"a": jnp.ones(2), "b": jnp.ones(2)}
    tx = per_parameter(jaxsched.sgd(0.1))
    with pytest.raises(ValueError, match="needs params"):
        tx.update({"a": None, "b": jnp.ones(2)}, tx.init(p))
    updates, _ = tx.update({"a": jnp.ones(2), "b": jnp.ones(2)}, tx.init(p))  # no None: fine
    np.testing.assert_allclose(updates["a"], -0.1)


def test_grouped_per_parameter_matches_two_torch_groups(x64):
    params, grads = _problem()
    labels = {"p0": "body", "p1": "body", "p2": "head"}
    tx = jaxsched.grouped(
        per_parameter_factory(jaxsched.adamw), labels,
        {"body": {"lr": 0.01}, "head": {"lr": 0.1, "weight_decay": 0.0}},
    )  # fmt: skip
    ours, _ = jax_trajectory(tx, params, grads, "float64")
    import torch

    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.AdamW(
        [{"params": [tensors["p0"], tensors["p1"]], "lr": 0.01},
         {"params": [tensors["p2"]], "lr": 0.1, "weight_decay": 0.0}],
    )  # fmt: skip
    for g in grads:
        for k, t in tensors.items():
            t.grad = None if g[k] is None else torch.tensor(g[k])
        opt.step()
    theirs = {k: t.detach().numpy() for k, t in tensors.items()}
    assert relative_difference(ours, theirs) < OPTIM_RTOL["float64"]


def test_a_state_round_trips_through_a_scan():
    # one structure before and after a step (Adafactor's mixed factored / unfactored leaves)
    p = {"m": jnp.ones((3, 4)), "v": jnp.ones(3)}
    tx = per_parameter(jaxsched.adafactor(0.01))
    state = tx.init(p)

    def body(carry, _):
        p, s = carry
        u, s = tx.update(jax.tree.map(jnp.ones_like, p), s, p, mask={"m": True, "v": False})
        return (optax.apply_updates(p, u), s), None

    (p2, s2), _ = jax.lax.scan(body, (p, state), None, length=3)
    assert jax.tree.structure(s2) == jax.tree.structure(state)
    np.testing.assert_array_equal(p2["v"], p["v"])
    assert [int(c) for c in s2.count] == [3, 0]


def test_a_mask_may_be_a_prefix_of_the_gradients():
    p = {"backbone": {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, "head": jnp.ones(3)}
    tx = per_parameter(jaxsched.adamw(0.1, weight_decay=0.1))
    g = jax.tree.map(jnp.ones_like, p)
    updates, state = jax.jit(tx.update)(g, tx.init(p), p, mask={"backbone": False, "head": True})
    for leaf in jax.tree.leaves(updates["backbone"]):
        np.testing.assert_array_equal(leaf, 0.0)
    assert [int(c) for c in state.count] == [0, 0, 1]  # flatten order: backbone.b, .w, head
