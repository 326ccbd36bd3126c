"""Parameters without a gradient (``None`` leaves in ``opt.step``): torch's skip, per parameter.

Every optimizer of the registry runs next to torch on two groups while some parameters get
``.grad = None`` at some steps: parameters, torch's state dict (which entries exist, each
parameter's ``step``) and a continuation after loading either side's state dict must agree.
"""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxsched import optim
from tests.compile_counter import count_compiles
from tests.optim.harness import TorchTwin, flat, make_tree, random_grads, two_groups
from tests.optimizer_cases import Case, first_case_per_optimizer
from tests.torch_reference import OPTIM_RTOL, relative_difference

# flatten order: classifier.b, classifier.w, features.bias, features.conv
SKIPPED = [{3}, {0, 3}, set(), {1}, {0, 1, 2, 3}, {2}, set()]


def _with_holes(grads: dict, skipped: set[int]) -> dict:
    leaves, treedef = jax.tree_util.tree_flatten(grads)
    return treedef.unflatten(
        [None if i in skipped else jnp.asarray(g) for i, g in enumerate(leaves)]
    )


def _torch_step(twin: TorchTwin, grads: dict, skipped: set[int]) -> None:
    for i, (path, g) in enumerate(jax.tree_util.tree_flatten_with_path(grads)[0]):
        t = twin.tensors[path]
        t.grad = None if i in skipped else torch.tensor(np.asarray(g), dtype=t.dtype)
    twin.opt.step()


def _assert_same_state(ours: dict, theirs: dict, rtol: float) -> None:
    assert sorted(ours["state"]) == sorted(theirs["state"])
    for pid, entry in theirs["state"].items():
        assert sorted(ours["state"][pid]) == sorted(entry), pid
        for key, value in entry.items():
            want = np.asarray(value.detach().numpy() if hasattr(value, "detach") else value)
            np.testing.assert_allclose(ours["state"][pid][key], want, rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("case", first_case_per_optimizer())
def test_none_gradients_follow_torch(case: Case, x64):
    tree = make_tree()
    groups = two_groups(tree, case.second)
    opt = case.jaxsched_class(groups, **case.kwargs)
    twin = TorchTwin(case.torch_class, groups, **case.kwargs)
    all_grads = random_grads(1, len(SKIPPED) + 1)
    rtol = OPTIM_RTOL["float64"]
    for step, (grads, skipped) in enumerate(zip(all_grads, SKIPPED, strict=False)):
        opt.step(_with_holes(grads, skipped))
        _torch_step(twin, grads, skipped)
        assert relative_difference(flat(opt.params), twin.params()) < rtol, step
        _assert_same_state(opt.state_dict(), twin.opt.state_dict(), 1e-9)
    assert {e.engine for e in opt.engine_info()} == {"xla"}
    assert "per-parameter" in opt.engine_info()[0].reason

    # both state dicts continue exactly, in a fresh optimizer of each kind
    last = all_grads[-1]
    from_ours = case.jaxsched_class(two_groups(tree, case.second), **case.kwargs)
    from_ours.load_state_dict(opt.state_dict())
    from_torch = case.jaxsched_class(two_groups(tree, case.second), **case.kwargs)
    from_torch.load_state_dict(twin.opt.state_dict())
    copied = pickle.loads(pickle.dumps(opt))
    for other in (from_ours, from_torch, copied):
        other.params = opt.params
    _torch_step(twin, last, {0})
    for other in (opt, from_ours, from_torch, copied):
        other.step(_with_holes(last, {0}))
        assert relative_difference(flat(other.params), twin.params()) < rtol


def test_unused_parameter_is_left_alone_by_weight_decay():
    # the figure: zeros as gradients decay an unused weight, None leaves it at 1.0
    params = {"used": jnp.ones(3), "unused": jnp.ones(3)}
    with_none = optim.AdamW(params, lr=0.1, weight_decay=0.1)
    with_zeros = optim.AdamW(params, lr=0.1, weight_decay=0.1)
    for _ in range(5):
        with_none.step({"used": jnp.ones(3), "unused": None})
        with_zeros.step({"used": jnp.ones(3), "unused": jnp.zeros(3)})
    np.testing.assert_array_equal(with_none.params["unused"], np.ones(3))
    assert float(with_zeros.params["unused"][0]) == pytest.approx(0.951, abs=1e-3)
    state = with_none.state_dict()["state"]
    assert sorted(state) == [1]  # no entry for the unused parameter (index 0 in flatten order)
    np.testing.assert_array_equal(state[1]["step"], 5.0)


def test_new_patterns_compile_nothing():
    params = {"a": jnp.ones(3), "b": jnp.ones((2, 2)), "c": jnp.ones(())}
    opt = optim.Adam(params, lr=0.1, weight_decay=0.1)
    full = jax.tree.map(jnp.ones_like, params)
    opt.step({**full, "a": None})  # the switch to per-parameter state compiles once
    patterns = [{"b": None}, {"c": None}, {}, {"a": None, "c": None}, {"a": None, "b": None}]
    with count_compiles() as compiles:
        for holes in patterns:
            opt.step({**full, **holes})
            opt.param_groups[0]["lr"] *= 0.5
    assert compiles() == 0


def test_train_step_after_the_switch():
    params = {"a": jnp.ones(3), "b": jnp.full(2, 2.0)}
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    twin = optim.SGD(params, lr=0.1, momentum=0.9)

    def loss(p):
        return jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 3)

    for o in (opt, twin):
        o.step({"a": None, "b": jnp.ones(2)})
    train_step = opt.make_train_step(loss)
    for _ in range(3):
        train_step()
        twin.step(jax.grad(loss)(twin.params))
    for key in params:
        np.testing.assert_allclose(opt.params[key], twin.params[key], rtol=1e-6)
    assert opt.state_dict()["state"].keys() == twin.state_dict()["state"].keys()


def test_all_gradients_none_steps_nothing():
    params = {"a": jnp.ones(2)}
    opt = optim.Adam(params, lr=0.1)
    opt.step({"a": None})
    np.testing.assert_array_equal(opt.params["a"], np.ones(2))
    assert opt.state_dict()["state"] == {}


def test_sparse_adam_refuses_none_gradients():
    opt = optim.SparseAdam({"a": jnp.ones(2), "b": jnp.ones(2)})
    message = r"None \(parameters \[0, 1\] in flatten order\) are not supported"
    with pytest.raises(ValueError, match=message):
        opt.step({"a": None, "b": None})


def test_wrong_structure_still_names_the_mismatch():
    opt = optim.SGD({"a": jnp.ones(2), "b": jnp.ones(2)}, lr=0.1)
    with pytest.raises(ValueError, match="grads do not match"):
        opt.step({"a": None})
    with pytest.raises(ValueError, match="grads do not match"):
        opt.step({"a": None, "b": jnp.ones(3)})
