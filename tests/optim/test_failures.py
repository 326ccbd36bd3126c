"""Nothing lost: a failed or misused call leaves params, state and param_groups as they were.

Each test drives an optimizer through the bad call and a twin that never saw it; after two more
valid steps both must agree bit for bit.
"""

from __future__ import annotations

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxsched import optim
from jaxsched.optim import lr_scheduler
from tests.optim.harness import TorchTwin, flat
from tests.torch_reference import OPTIM_RTOL, relative_difference

SHAPES = {"a": {"w": (3, 4), "b": (4,)}, "h": {"w": (4, 2)}}


def tree(seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.standard_normal(s), dtype),
        SHAPES,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def groups(t):
    return [{"params": {"a": t["a"]}}, {"params": {"h": t["h"]}, "lr": 0.05}]


def grads(step):
    return tree(100 + step)


def assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_twins(opt, twin, start=2):
    """Two more valid steps; params, state and param_groups agree bit for bit."""
    for step in range(start, start + 2):
        opt.step(grads(step))
        twin.step(grads(step))
    assert_same(opt.params, twin.params)
    assert_same(opt.opt_state, twin.opt_state)
    for a, b in zip(opt.param_groups, twin.param_groups, strict=True):
        assert {k: v for k, v in a.items() if k != "params"} == {
            k: v for k, v in b.items() if k != "params"
        }


KERNEL_AND_XLA = [
    pytest.param(lambda t: optim.Adam(groups(t), lr=0.01), id="Adam-kernel"),
    pytest.param(lambda t: optim.Adam(groups(t), lr=0.01, fused=False), id="Adam-xla"),
    pytest.param(lambda t: optim.SGD(groups(t), lr=0.1, momentum=0.9), id="SGD-kernel"),
    pytest.param(lambda t: optim.RMSprop(groups(t), lr=0.01), id="RMSprop-xla"),
]


def both(build):
    t = tree()
    opt, twin = build(t), build(t)
    for step in range(2):
        opt.step(grads(step))
        twin.step(grads(step))
    return opt, twin


# -- data loss ------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", KERNEL_AND_XLA)
def test_train_step_that_raises_while_running_keeps_everything(build):
    opt, twin = both(build)

    def fail(x):
        if float(x) > 0:
            raise RuntimeError("data loader hiccup")

    def loss_fn(params, x):
        jax.debug.callback(fail, x)
        return sum(jnp.sum(p**2) for p in jax.tree.leaves(params)) * x

    train_step = opt.make_train_step(loss_fn)
    with pytest.raises(Exception, match="data loader hiccup"):
        train_step(jnp.float32(1.0))
        jax.block_until_ready(opt.params)
    assert_twins(opt, twin)
    train_step(jnp.float32(-1.0))  # a step that succeeds still works afterwards


@pytest.mark.parametrize("build", KERNEL_AND_XLA)
@pytest.mark.parametrize("transform", ["jit", "vmap", "grad"])
def test_step_under_a_jax_transformation_raises_and_changes_nothing(build, transform):
    opt, twin = both(build)
    g = grads(9)

    def call(scale):
        opt.step(jax.tree.map(lambda x: x * scale, g))
        return scale

    wrapped = {
        "jit": lambda: jax.jit(call)(1.0),
        "vmap": lambda: jax.vmap(call)(jnp.ones(2)),
        "grad": lambda: jax.grad(call)(1.0),
    }[transform]
    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        wrapped()
    assert_twins(opt, twin)


def test_train_step_under_jit_raises_and_changes_nothing():
    opt, twin = both(KERNEL_AND_XLA[0].values[0])
    train_step = opt.make_train_step(lambda p, x: x * sum(jnp.sum(v) for v in jax.tree.leaves(p)))
    with pytest.raises(RuntimeError, match="inside a JAX transformation"):
        jax.jit(train_step)(1.0)
    assert_twins(opt, twin)


@pytest.mark.parametrize("build", KERNEL_AND_XLA)
@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda x: x.astype(jnp.bfloat16), id="bfloat16"),
        pytest.param(lambda x: jnp.zeros((*x.shape, 2), x.dtype), id="shape"),
    ],
)
def test_opt_state_setter_refuses_wrong_arrays_whole(build, spoil):
    opt, twin = both(build)
    state = opt.opt_state
    inner = state.inner
    # spoil the last per-parameter buffer of the last group: the check must come before any
    # group is replaced
    last = inner[1]
    field = next(f for f in last._fields if isinstance(getattr(last, f), list))
    buffers = list(getattr(last, field))
    buffers[-1] = spoil(buffers[-1])
    bad = state._replace(inner={**inner, 1: last._replace(**{field: buffers})})
    with pytest.raises(ValueError, match="expected"):
        opt.opt_state = bad
    assert_twins(opt, twin)


@pytest.mark.parametrize(
    ("build", "key", "value"),
    [
        pytest.param(KERNEL_AND_XLA[0].values[0], "lr", None, id="lr-None"),
        pytest.param(KERNEL_AND_XLA[0].values[0], "amsgrad", True, id="amsgrad-toggled"),
        pytest.param(KERNEL_AND_XLA[0].values[0], "betas", 0.9, id="betas-not-a-pair"),
        pytest.param(KERNEL_AND_XLA[2].values[0], "dampening", 0.5, id="nesterov-dampening"),
        pytest.param(KERNEL_AND_XLA[3].values[0], "centered", True, id="centered-toggled"),
    ],
)
def test_a_bad_param_groups_write_fails_every_step_until_fixed(build, key, value):
    opt, twin = both(build)
    if key == "dampening":
        opt.param_groups[0]["nesterov"] = twin.param_groups[0]["nesterov"] = True
    old = opt.param_groups[0][key]
    opt.param_groups[0][key] = value
    for _ in range(2):  # the retry fails too, as torch's step would
        with pytest.raises((ValueError, TypeError)):
            opt.step(grads(5))
    assert opt.param_groups[0][key] == value  # the user's write stays visible
    opt.param_groups[0][key] = old
    assert_twins(opt, twin)


def _without_eps(sd):
    return {**sd, "param_groups": [
        {k: v for k, v in g.items() if k != "eps"} for g in sd["param_groups"]
    ]}  # fmt: skip


def _wrong_shape(sd):
    state = {**sd["state"], 2: {**sd["state"][2], "exp_avg": np.zeros((5, 5), np.float32)}}
    return {**sd, "state": state}


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda sd: optim.SGD(groups(tree()), lr=0.1).state_dict(), id="other-class"),
        pytest.param(_without_eps, id="missing-key"),
        pytest.param(_wrong_shape, id="wrong-shape"),
    ],
)
def test_a_bad_load_state_dict_changes_nothing(bad):
    opt, twin = both(KERNEL_AND_XLA[0].values[0])
    with pytest.raises(ValueError):
        opt.load_state_dict(bad(opt.state_dict()))
    opt.state_dict()  # still exportable
    assert_twins(opt, twin)


@pytest.mark.parametrize("build", KERNEL_AND_XLA)
def test_arrays_held_outside_keep_their_values(build):
    opt, twin = both(build)
    held = opt.params["a"]["w"]  # a reference, as a torch user keeps a parameter
    before = np.asarray(held).copy()
    state = opt.opt_state
    state_before = [np.asarray(x).copy() for x in jax.tree.leaves(state)]
    opt.step(grads(2))
    twin.step(grads(2))
    np.testing.assert_array_equal(np.asarray(held), before)  # not deleted, not changed
    for x, y in zip(jax.tree.leaves(state), state_before, strict=True):
        np.testing.assert_array_equal(np.asarray(x), y)
    del held, state
    assert_twins(opt, twin, start=3)


def test_unheld_parameters_are_updated_in_place():
    opt = optim.Adam(groups(tree()), lr=0.01)
    opt.step(grads(0))
    pointer = opt.params["a"]["w"].unsafe_buffer_pointer()
    opt.step(grads(1))  # nobody holds the old leaves: the step reuses their buffers
    assert opt.params["a"]["w"].unsafe_buffer_pointer() == pointer


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(lr="0.1"), TypeError, "expected a number, got str"),
        (dict(lr=True), TypeError, "expected a number, got bool"),
        (dict(momentum="0.9"), TypeError, "momentum"),
    ],
)
def test_non_numeric_hyperparameters_raise_type_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        optim.SGD(groups(tree()), **{"lr": 0.1, **kwargs})


def test_torch_rejects_a_string_lr_too():
    with pytest.raises(TypeError):
        torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr="0.1")


# -- copies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", KERNEL_AND_XLA)
def test_deepcopy_and_pickle_continue_independently(build):
    opt, twin = both(build)
    scheduler = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert_same(clone.params, opt.params)
        assert_same(clone.opt_state, opt.opt_state)
        clone.step(grads(7))
        clone.param_groups[0]["lr"] = 123.0
        assert opt.param_groups[0]["lr"] != 123.0
    scheduler.step()
    twin_scheduler = lr_scheduler.StepLR(twin, step_size=1, gamma=0.5)
    twin_scheduler.step()
    both_copy = pickle.loads(pickle.dumps((opt, scheduler)))
    assert both_copy[1].optimizer is both_copy[0]
    assert_twins(opt, twin)


def test_torch_state_dict_with_frozen_parameters_continues_per_parameter():
    t = tree()
    twin = TorchTwin(torch.optim.Adam, groups(t), dtype=torch.float32, lr=0.01)
    g = grads(0)
    twin.step(g)
    # one parameter frozen for a step (no gradient): torch keeps a smaller step for it
    first = next(iter(twin.tensors.values()))
    first.requires_grad_(False)
    first.grad = None
    for path, value in jax.tree_util.tree_flatten_with_path(grads(1))[0]:
        tensor = twin.tensors[path]
        if tensor.requires_grad:
            tensor.grad = torch.tensor(np.asarray(value))
    twin.opt.step()
    opt = optim.Adam(groups(t), lr=0.01)
    opt.load_state_dict(twin.opt.state_dict())  # per-parameter steps: no longer refused
    theirs = twin.params()
    opt.params = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.asarray(theirs[jax.tree_util.keystr(path)], x.dtype), t
    )
    steps = {pid: float(e["step"]) for pid, e in opt.state_dict()["state"].items()}
    assert sorted(set(steps.values())) == [1.0, 2.0]
    first.requires_grad_(True)
    for step in (2, 3):
        twin.step(grads(step))
        opt.step(grads(step))
    assert relative_difference(flat(opt.params), twin.params()) < OPTIM_RTOL["float32"]


def test_bad_values_name_their_key():
    with pytest.raises(KeyError, match=r"param_groups\[1\] has no 'params' entry"):
        optim.SGD([{"params": tree()}, {"lr": 0.1}], lr=0.1)
    opt, twin = both(KERNEL_AND_XLA[0].values[0])
    opt.param_groups[1]["betas"] = (0.9, 0.99, 0.5)
    with pytest.raises(ValueError, match=r"betas to be a pair .* got \(0.9, 0.99, 0.5\)"):
        opt.step(grads(2))
    opt.param_groups[1]["betas"] = (0.9, 0.999)
    assert_twins(opt, twin)


@pytest.mark.parametrize("build", KERNEL_AND_XLA)
@pytest.mark.parametrize("route", ["json", "np.save"])
def test_state_dict_round_trips_continue_bit_identically(build, route, tmp_path):
    import json

    opt, twin = both(build)
    saved = opt.state_dict()
    if route == "json":  # arrays as lists, pairs as lists, parameter ids as strings
        text = json.dumps(saved, default=lambda a: np.asarray(a).tolist())
        loaded = json.loads(text)
    else:
        np.save(tmp_path / "sd.npy", np.asarray(saved, dtype=object), allow_pickle=True)
        loaded = np.load(tmp_path / "sd.npy", allow_pickle=True).item()
    resumed = build(tree())
    resumed.load_state_dict(loaded)
    resumed.params = opt.params
    assert [i.engine for i in resumed.engine_info()] == [i.engine for i in opt.engine_info()]
    for step in range(2, 4):
        resumed.step(grads(step))
        twin.step(grads(step))
    assert_same(resumed.params, twin.params)
    # what torch would see (torch's SGD keeps no step count, so neither does the load)
    ours, theirs = resumed.state_dict()["state"], twin.state_dict()["state"]
    assert ours.keys() == theirs.keys()
    for i, entry in theirs.items():
        assert list(ours[i]) == list(entry)
        for key, value in entry.items():
            np.testing.assert_array_equal(ours[i][key], value)


def test_callbacks_are_found_inside_loops_and_branches():
    from jaxsched.optim._programs import calls_back

    def in_scan(p, x):
        def body(c, _):
            jax.debug.callback(lambda v: None, c)
            return c + 1, None

        return jnp.sum(p) * jax.lax.scan(body, x, None, length=2)[0]

    def in_cond(p, x):
        def loud(v):
            jax.debug.callback(lambda u: None, v)
            return v

        return jnp.sum(p) * jax.lax.cond(x > 0, loud, lambda v: v, x)

    assert calls_back(in_scan, jnp.ones(3), 1.0)
    assert calls_back(in_cond, jnp.ones(3), 1.0)
    assert not calls_back(lambda p, x: jnp.sum(p) * x, jnp.ones(3), 1.0)
