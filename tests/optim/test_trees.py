"""The fast read of nested-dict gradient trees (``_trees.DictReader``) and its fallbacks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsched import optim
from jaxsched.optim._trees import DictReader
from tests.optim.harness import make_tree, random_grads


def tree32():
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), make_tree(0))


def grads32(seed=1):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), random_grads(seed, 1)[0])


def test_layout_reads_leaves_in_jax_order_and_rejects_other_dicts():
    tree = {"b": {"y": jnp.ones(2), "x": {"k": jnp.ones(1)}}, "a": jnp.ones(3), "e": {}}
    tree = jax.tree.map(lambda x: x, tree)  # keys in jax's order, as in opt.params
    layout = DictReader.of(tree)
    assert layout is not None
    assert all(a is b for a, b in zip(layout.leaves(tree), jax.tree.leaves(tree), strict=True))
    reordered = {"e": {}, "a": tree["a"], "b": tree["b"]}  # same tree, other insertion order
    assert layout.leaves(reordered) is None  # the caller falls back to jax
    assert layout.leaves({**tree, "c": jnp.ones(1)}) is None
    assert layout.leaves({"a": tree["a"], "b": tree["b"]}) is None
    assert layout.leaves([tree["a"]]) is None


@pytest.mark.parametrize(
    "tree",
    [
        [jnp.ones(2), jnp.ones(3)],
        {"a": (jnp.ones(2), jnp.ones(1))},
        {"a": None, "b": jnp.ones(1)},
        {"a": np.ones(2)},
        {},
    ],
    ids=["list", "tuple-node", "none-node", "numpy-leaf", "empty"],
)
def test_layout_applies_only_to_dicts_of_jax_arrays(tree):
    assert DictReader.of(tree) is None


def test_step_takes_dicts_in_any_key_order_with_the_same_result():
    a, b = optim.Adam(tree32(), lr=0.1), optim.Adam(tree32(), lr=0.1)
    grads = grads32()
    shuffled = {k: dict(reversed(v.items())) for k, v in reversed(grads.items())}
    for _ in range(2):
        a.step(grads)
        b.step(shuffled)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda w: {"inner": w}, r"\['classifier'\]\['w'\]"),
        (lambda w: [w, w], r"\['classifier'\]\['w'\]"),
    ],
    ids=["dict", "list"],  # None is a missing gradient (tests/optim/test_missing_grads.py)
)
def test_a_container_where_a_gradient_leaf_belongs_raises(fused, change, message):
    # The fast read checks the dicts' keys; the leaves are checked when the step is traced.
    opt = optim.SGD(tree32(), lr=0.1, momentum=0.9, fused=fused)
    opt.step(grads32())
    before = jax.tree.map(np.asarray, opt.params)
    bad = grads32(2)
    bad["classifier"]["w"] = change(bad["classifier"]["w"])
    with pytest.raises(ValueError, match=message):
        opt.step(bad)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.all(a == b)), before, opt.params))
    opt.step(grads32(3))  # nothing was donated
    assert int(opt.opt_state.inner[0].count) == 2


def test_nnx_state_is_read_as_its_pure_dict():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    opt = optim.SGD(state, lr=0.1)
    assert opt._dict_tree is not None  # the fast reader applies to the pure dict
    assert opt.param_groups[0]["param_names"] == ["bias", "kernel"]  # no nnx ".value"
    grads = jax.tree.map(jnp.ones_like, state)  # a State, as nnx.grad returns
    new = opt.step(grads)
    np.testing.assert_allclose(np.asarray(new["bias"]), -0.1 * np.ones(2), rtol=1e-6)
    nnx.update(model, opt.params)
    np.testing.assert_allclose(np.asarray(model.bias[...]), -0.1 * np.ones(2), rtol=1e-6)


def test_nnx_model_in_several_groups_takes_nnx_grad():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.body = nnx.Linear(3, 4, rngs=rngs)
            self.head = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.head(nnx.relu(self.body(x)))

    model = Net(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    opt = optim.AdamW(
        [{"params": {"body": state["body"]}}, {"params": {"head": state["head"]}, "lr": 0.01}],
        lr=0.1,
    )
    x = jnp.ones((5, 3))
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)  # an nnx State
    reference = optim.AdamW(
        [{"params": {"body": nnx.to_pure_dict(state)["body"]}},
         {"params": {"head": nnx.to_pure_dict(state)["head"]}, "lr": 0.01}],
        lr=0.1,
    )  # fmt: skip
    new = opt.step(grads)
    expected = reference.step(nnx.to_pure_dict(grads))
    assert jax.tree.structure(new) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    assert opt.param_groups[1]["param_names"] == ["head.bias", "head.kernel"]
