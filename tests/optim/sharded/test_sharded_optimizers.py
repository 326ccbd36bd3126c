"""The stateful optimizers on 8 XLA host devices: params and every state buffer keep the params'
shardings on every path, the elementwise step holds no collective, per-device memory equals
optax's, nothing recompiles, and the numbers equal a one-device run.

Run by ``tests/optim/test_sharding.py`` in its own process (the device count is fixed before
jax starts); ``JAXSCHED_SHARDED_RUN=1`` lets pytest collect this folder.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import torch
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxsched import optim
from tests.compile_counter import count_compiles
from tests.optim.harness import TorchTwin
from tests.optimizer_cases import CASES as ALL_CASES
from tests.optimizer_cases import runs

if len(jax.devices()) != 8:
    raise RuntimeError("run with XLA_FLAGS=--xla_force_host_platform_device_count=8")

MESH = jax.make_mesh((8,), ("d",))
MESH2 = jax.make_mesh((2, 4), ("x", "y"))
SHAPES = {"body": {"w": (64, 24), "v": (32, 8)}, "head": {"b": (40,), "c": (10,)}}
GROUP_LEAVES = [["v", "w"], ["b", "c"]]  # each group's leaves in flatten order
SHAPES_BY_NAME = {name: shape for part in SHAPES.values() for name, shape in part.items()}

# layout -> {leaf name: sharding}; "head/c" (10 elements) never splits over 8 devices, so it is
# replicated next to sharded leaves of its group.
LAYOUTS = {
    "dp": {k: NamedSharding(MESH, P()) for k in ("w", "v", "b", "c")},
    "fsdp": {
        "w": NamedSharding(MESH, P("d")),
        "v": NamedSharding(MESH, P("d")),
        "b": NamedSharding(MESH, P("d")),
        "c": NamedSharding(MESH, P()),
    },
    "2d": {
        "w": NamedSharding(MESH2, P("x", "y")),
        "v": NamedSharding(MESH2, P(None, "y")),
        "b": NamedSharding(MESH2, P(("x", "y"))),
        "c": NamedSharding(MESH2, P()),
    },
    "mixed": {
        "w": NamedSharding(MESH, P(None, "d")),
        "v": NamedSharding(MESH, P("d")),
        "b": NamedSharding(MESH, P()),
        "c": NamedSharding(MESH, P()),
    },
}

# One registry case per optimizer (its richest: momentum, amsgrad, weight decay switched on),
# on every engine it can run on.
SHARDED_IDS = (
    "sgd-dampening-wd", "adam-l2-amsgrad", "adamw-amsgrad-eps", "adagrad-decay-init-wd",
    "adadelta-wd-max", "adamax-wd-max", "asgd-t0-wd", "nadam-wd-psi", "radam-decoupled-max",
    "rmsprop-centered-momentum-wd", "rprop-etas-max", "adafactor-wd-eps-d-max",
)  # fmt: skip
CASES = [
    (param.values[0], param.values[1]) for param in runs() if param.values[0].id in SHARDED_IDS
]
assert {case.name for case, _ in CASES} == {case.name for case in ALL_CASES}
# optimizers whose update is not elementwise (Adafactor's factored second moment takes row and
# column means): their sharded step communicates, and state of another shape is replicated
NOT_ELEMENTWISE = {"Adafactor"}
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")


def host_tree(seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: rng.standard_normal(s).astype(np.float32),
        SHAPES,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def placed(tree, layout):
    return {
        part: {k: jax.device_put(v, LAYOUTS[layout][k]) for k, v in leaves.items()}
        for part, leaves in tree.items()
    }


def groups(tree):
    return [{"params": {"body": tree["body"]}}, {"params": {"head": tree["head"]}, "lr": 0.05}]


def sharding_of(path):
    return path[-1].key


def assert_placed_like_params(tree, layout):
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        expected = LAYOUTS[layout][sharding_of(path)]
        assert x.sharding.is_equivalent_to(expected, x.ndim), (path, x.sharding, expected)


def assert_state_placed(opt, layout):
    """Every per-parameter state buffer has its parameter's sharding; scalars are replicated
    over the same devices."""
    devices = jax.tree.leaves(opt.params)[0].sharding.device_set
    state = opt.opt_state.inner
    for g, names in enumerate(GROUP_LEAVES):
        inner = state[g]
        for field in inner._fields:
            value = getattr(inner, field)
            if isinstance(value, list):
                for name, x in zip(names, value, strict=True):
                    for y in jax.tree.leaves(x):
                        expected = _split_like(LAYOUTS[layout][name], SHAPES_BY_NAME[name], y)
                        assert y.sharding.is_equivalent_to(expected, y.ndim), (g, field, name)
            elif value is not None:
                for x in jax.tree.leaves(value):
                    assert x.sharding.is_fully_replicated and x.sharding.device_set == devices


def _split_like(param_sharding, param_shape, state):
    """A state array's expected sharding: its parameter's, along the dimensions the two share
    (all of them for a moment shaped like the parameter; Adafactor's row/column statistics
    keep the split of the dimension they keep); replicated for another rank."""
    if len(state.shape) != len(param_shape):
        return NamedSharding(param_sharding.mesh, P())
    spec = tuple(param_sharding.spec) + (None,) * (len(param_shape) - len(param_sharding.spec))
    kept = [a if n == m else None for a, n, m in zip(spec, state.shape, param_shape, strict=True)]
    return NamedSharding(param_sharding.mesh, P(*kept))


def collectives(compiled_text):
    return [line for line in compiled_text.splitlines() if any(c in line for c in COLLECTIVES)]


def grads_at(step, layout):
    return placed(host_tree(100 + step), layout)


# (layout, case, leaves per kernel call): the kernel engine splits a group into calls of
# LEAVES_PER_CALL leaves; every layout runs once with one call per group and, for the kernel
# cases, once with a call per leaf.
STEP_CASES = [
    pytest.param(layout, case, engine, per_call, id=f"{layout}-{case.id}-{engine}-{per_call}")
    for layout in LAYOUTS
    for case, engine in CASES
    for per_call in ((128, 1) if engine == "kernel" else (128,))
]


@pytest.mark.parametrize(("layout", "case", "engine", "per_call"), STEP_CASES)
def test_step_keeps_shardings_and_matches_one_device(layout, case, engine, per_call, monkeypatch):
    from jaxsched.optim import _engines

    monkeypatch.setattr(_engines, "LEAVES_PER_CALL", per_call)
    cls, kwargs = case.jaxsched_class, case.arguments(engine)
    host = host_tree()
    opt = cls(groups(placed(host, layout)), **kwargs)
    one = cls(groups(jax.tree.map(jnp.asarray, host)), **kwargs)  # one device, uncommitted
    assert [i.engine for i in opt.engine_info()] == [engine, engine]
    assert [i.shards for i in opt.engine_info()] == [8, 8]
    assert_state_placed(opt, layout)  # allocated placed, before any step
    for step in range(3):
        new = opt.step(grads_at(step, layout))
        ref = one.step(jax.tree.map(np.asarray, grads_at(step, layout)))
    assert_placed_like_params(new, layout)
    assert_state_placed(opt, layout)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(opt.opt_state), jax.tree.leaves(one.opt_state), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    if layout != "dp" and case.name not in NOT_ELEMENTWISE:
        # an elementwise update of sharded leaves needs no communication
        text = opt.lower_step(grads_at(3, layout)).compile().as_text()
        assert collectives(text) == [], collectives(text)


@pytest.mark.parametrize("layout", ["fsdp", "2d"])
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_per_device_memory_equals_optax(layout, cls):
    params = placed(host_tree(), layout)
    kwargs = dict(lr=0.01, momentum=0.9) if cls is optim.SGD else dict(lr=0.01)
    opt = cls(params, **kwargs)
    grads = grads_at(0, layout)
    ours = opt.lower_step(grads).compile().memory_analysis()
    tx = {
        optim.SGD: lambda: optax.sgd(0.01, momentum=0.9),
        optim.Adam: lambda: optax.adam(0.01),
        optim.AdamW: lambda: optax.adamw(0.01),
    }[cls]()

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    theirs = (
        jax.jit(step, donate_argnums=(0, 1))
        .lower(params, tx.init(params), grads)
        .compile()
        .memory_analysis()
    )
    # per-device bytes of the program's arguments (params, state, grads, hyperparameters)
    assert ours.argument_size_in_bytes <= 1.05 * theirs.argument_size_in_bytes
    assert ours.temp_size_in_bytes <= theirs.temp_size_in_bytes + 1024


@pytest.mark.parametrize(
    "place",
    [
        pytest.param(lambda x, name: jax.device_put(x, jax.devices()[3]), id="one-device"),
        pytest.param(lambda x, name: jax.device_put(x, LAYOUTS["fsdp"][name]), id="fsdp"),
    ],
)
@pytest.mark.parametrize("cls", [optim.Adam, optim.Adagrad])
def test_no_recompiles_with_committed_params(place, cls):
    params = {
        part: {k: place(v, k) for k, v in leaves.items()} for part, leaves in host_tree().items()
    }
    opt = cls(groups(params), lr=0.01)
    grads = jax.tree.map(jnp.ones_like, params)
    opt.step(grads)
    with count_compiles() as compiles:
        for step in range(4):
            opt.param_groups[step % 2]["lr"] = 0.01 / (step + 2)
            opt.step(grads)
        jax.block_until_ready(opt.params)
    assert compiles() == 0


def loss_fn(params, x):
    h = jnp.tanh(x @ params["body"]["w"])  # (n, 24)
    return jnp.sum(h**2) + jnp.sum(params["body"]["v"] ** 2) + jnp.sum(params["head"]["b"] ** 2)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_train_step_keeps_shardings_and_communicates_no_more_than_optax(cls):
    host = host_tree()
    params = placed(host, "fsdp")
    kwargs = dict(lr=0.01, momentum=0.9) if cls is optim.SGD else dict(lr=0.01)
    opt = cls(params, **kwargs)
    one = cls(jax.tree.map(jnp.asarray, host), **kwargs)
    x = jax.device_put(np.random.default_rng(5).standard_normal((16, 64)).astype(np.float32),
                       NamedSharding(MESH, P("d")))  # fmt: skip
    train_step, ref_step = opt.make_train_step(loss_fn), one.make_train_step(loss_fn)
    for _ in range(3):
        loss, ref_loss = train_step(x), ref_step(np.asarray(x))
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(opt.params), jax.tree.leaves(one.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert_placed_like_params(opt.params, "fsdp")
    ours = collectives(train_step.lower(x).compile().as_text())

    tx = optax.sgd(0.01, momentum=0.9) if cls is optim.SGD else optax.adam(0.01)

    def optax_step(p, s, x):
        loss, g = jax.value_and_grad(loss_fn)(p, x)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    theirs = collectives(jax.jit(optax_step).lower(params, tx.init(params), x).compile().as_text())
    assert len(ours) <= len(theirs), (ours, theirs)


def test_state_dicts_setters_and_new_groups_keep_shardings():
    layout = "fsdp"
    host = host_tree()
    opt = optim.Adam(groups(placed(host, layout)), lr=0.01)
    twin = TorchTwin(torch.optim.Adam, groups(host), dtype=torch.float32, lr=0.01)
    for step in range(2):
        opt.step(grads_at(step, layout))
        twin.step(jax.tree.map(np.asarray, grads_at(step, layout)))

    opt.load_state_dict(opt.state_dict())  # ours
    assert_state_placed(opt, layout)
    opt.load_state_dict(twin.opt.state_dict())  # torch's
    assert_state_placed(opt, layout)
    opt.opt_state = opt.opt_state
    assert_state_placed(opt, layout)
    opt.params = jax.tree.map(np.asarray, opt.params)  # host values go to the params' devices
    assert_placed_like_params(opt.params, layout)
    opt.step(grads_at(2, layout))
    twin.step(jax.tree.map(np.asarray, grads_at(2, layout)))
    for path, value in jax.tree_util.tree_flatten_with_path(opt.params)[0]:
        expected = twin.params()[jax.tree_util.keystr(path)]
        np.testing.assert_allclose(np.asarray(value), expected, rtol=2e-6, atol=1e-7)

    fsdp = NamedSharding(MESH, P("d"))
    extra = {"extra": {"u": jax.device_put(np.ones((16, 8), np.float32), fsdp)}}
    opt.add_param_group({"params": extra, "lr": 0.1})
    assert opt.engine_info()[2].engine == "kernel"
    opt.step({**grads_at(3, layout), **jax.tree.map(jnp.ones_like, extra)})
    assert opt.params["extra"]["u"].sharding.is_equivalent_to(fsdp, 2)
    for buffer in (opt.opt_state.inner[2].exp_avg[0], opt.opt_state.inner[2].exp_avg_sq[0]):
        assert buffer.sharding.is_equivalent_to(fsdp, 2)


def test_orbax_round_trip_restores_shardings_and_continues(tmp_path):
    layout = "2d"
    opt = optim.AdamW(groups(placed(host_tree(), layout)), lr=0.01)
    twin = optim.AdamW(groups(placed(host_tree(), layout)), lr=0.01)
    for step in range(2):
        opt.step(grads_at(step, layout))
        twin.step(grads_at(step, layout))
    state = opt.opt_state
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.fspath(tmp_path / "opt"), state)
        checkpointer.wait_until_finished()
        restored = checkpointer.restore(os.fspath(tmp_path / "opt"), abstract)
    fresh = optim.AdamW(groups(placed(host_tree(), layout)), lr=0.01)
    fresh.params = opt.params
    fresh.opt_state = restored
    assert_state_placed(fresh, layout)
    a, b = fresh.step(grads_at(2, layout)), twin.step(grads_at(2, layout))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_group_the_kernels_cannot_take_runs_on_xla_sharded_and_says_why():
    fsdp = NamedSharding(MESH, P("d"))
    params = {
        "a": jax.device_put(jnp.ones((64, 8), jnp.bfloat16), fsdp),
        "b": jax.device_put(jnp.ones((16,), jnp.bfloat16), fsdp),
    }
    opt = optim.Adam(params, lr=0.1)
    (info,) = opt.engine_info()
    assert info.engine == "xla" and "bfloat16" in info.reason, info
    new = opt.step(jax.tree.map(jnp.ones_like, params))
    for x in new.values():
        assert x.sharding.is_equivalent_to(fsdp, x.ndim)
    for x in opt.opt_state.inner[0].exp_avg:
        assert x.sharding.is_equivalent_to(fsdp, x.ndim)
    text = opt.lower_step(jax.tree.map(jnp.ones_like, params)).compile().as_text()
    assert collectives(text) == []


@pytest.mark.parametrize("layout", ["fsdp", "2d"])
@pytest.mark.parametrize("search", [None, "strong_wolfe"])
def test_lbfgs_keeps_shardings_history_included_and_matches_one_device(layout, search, x64):
    """LBFGS's vectors stay trees: d, the previous gradient and each history slot are split like
    their parameter (the history along every axis but its first), never gathered.  float64:
    its iterations amplify the float32 rounding of a differently ordered sum (2e-4 here)."""
    host = {k: v.astype(np.float64) for part in host_tree().values() for k, v in part.items()}
    placed_params = {k: jax.device_put(v, LAYOUTS[layout][k]) for k, v in host.items()}

    def loss_fn(p):
        return sum(jnp.sum(jnp.tanh(x) ** 2 + 0.1 * x) for x in jax.tree.leaves(p))

    kwargs = dict(lr=0.5, max_iter=4, history_size=3, line_search_fn=search)
    opt = optim.LBFGS(placed_params, **kwargs)
    one = optim.LBFGS(jax.tree.map(jnp.asarray, host), **kwargs)
    for _ in range(3):
        loss = opt.step(loss_fn)
        ref = one.step(loss_fn)
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-12)
    for k, x in opt.params.items():
        assert x.sharding.is_equivalent_to(LAYOUTS[layout][k], x.ndim), k
        np.testing.assert_allclose(np.asarray(x), np.asarray(one.params[k]), rtol=1e-10, atol=1e-12)
    state = opt._inner[0]
    names = sorted(host)
    for field in ("d", "prev_flat_grad", "old_dirs", "old_stps"):
        for k, x in zip(names, getattr(state, field), strict=True):
            want = LAYOUTS[layout][k]
            if field.startswith("old_"):
                want = NamedSharding(want.mesh, P(None, *want.spec))
            assert x.sharding.is_equivalent_to(want, x.ndim), (field, k, x.sharding)


def test_sparse_adam_keeps_shardings():
    from jax.experimental import sparse

    table = np.random.default_rng(0).normal(size=(64, 8))
    sharding = NamedSharding(MESH, P("d"))
    opt = optim.SparseAdam({"emb": jax.device_put(table, sharding)}, lr=0.01)
    one = optim.SparseAdam({"emb": jnp.asarray(table)}, lr=0.01)
    for step in range(3):
        rows = np.random.default_rng(step).integers(0, 64, 5)
        g = sparse.BCOO((jnp.ones((5, 8)) * (step + 1), jnp.asarray(rows)[:, None]), shape=(64, 8))
        opt.step({"emb": g})
        one.step({"emb": g})
    assert opt.params["emb"].sharding.is_equivalent_to(sharding, 2)
    for x in jax.tree.leaves(opt._inner[0].exp_avg):
        assert x.sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_allclose(
        np.asarray(opt.params["emb"]), np.asarray(one.params["emb"]), rtol=1e-6
    )


@pytest.mark.parametrize("layout", ["fsdp", "2d"])
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_none_gradients_keep_shardings_and_match_one_device(layout, cls):
    """The per-parameter mode (``None`` gradients): each leaf's state and count placed like its
    parameter, the zeros standing in for a missing gradient too; no collective; the numbers
    equal a one-device run."""
    kwargs = dict(lr=0.01, momentum=0.9) if cls is optim.SGD else dict(lr=0.01, weight_decay=0.1)
    host = host_tree()
    opt = cls(groups(placed(host, layout)), **kwargs)
    one = cls(groups(jax.tree.map(jnp.asarray, host)), **kwargs)
    holes = [{"w"}, set(), {"b", "v"}, {"c"}]
    for step, missing in enumerate(holes):
        g = grads_at(step, layout)
        g = {part: {k: None if k in missing else v for k, v in leaves.items()}
             for part, leaves in g.items()}  # fmt: skip
        opt.step(g)
        one.step(jax.tree.map(lambda x: None if x is None else jnp.asarray(np.asarray(x)), g))
    assert_placed_like_params(opt.params, layout)
    assert_state_placed(opt, layout)
    assert not collectives(opt.lower_step(grads_at(0, layout)).compile().as_text())
    for path, value in jax.tree_util.tree_flatten_with_path(opt.params)[0]:
        ref = one.params[path[0].key][path[1].key]
        np.testing.assert_allclose(np.asarray(value), np.asarray(ref), rtol=1e-6, atol=1e-7)
    assert opt.state_dict()["state"].keys() == one.state_dict()["state"].keys()


@pytest.mark.parametrize("layout", ["fsdp", "2d"])
def test_averaged_model_keeps_shardings(layout):
    from jaxsched.optim import swa_utils

    host = host_tree()
    for avg in ({}, {"avg_fn": swa_utils.get_ema_avg_fn(0.9)},
                {"multi_avg_fn": swa_utils.get_swa_multi_avg_fn()}):  # fmt: skip
        model = swa_utils.AveragedModel(placed(host, layout), **avg)
        one = swa_utils.AveragedModel(jax.tree.map(jnp.asarray, host), **avg)
        for step in range(3):
            model.update_parameters(grads_at(step, layout))
            one.update_parameters(jax.tree.map(jnp.asarray, host_tree(100 + step)))
        assert_placed_like_params(model.module, layout)
        for x, y in zip(jax.tree.leaves(model.module), jax.tree.leaves(one.module), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        state = swa_utils.AverageState(model.module, model.n_averaged)
        text = model._update.lower(state, grads_at(0, layout)).compile().as_text()
        assert not collectives(text)


@pytest.mark.parametrize("layout", ["fsdp", "2d"])
def test_a_torch_checkpoint_loads_onto_the_shardings(layout):
    """interop: weights and optimizer state from a torch checkpoint go from the host straight
    to the parameters' shardings (and a transposed kernel to its abstract target's)."""
    from jaxsched import interop

    host = host_tree()
    named = [(f"{part}.{k}", torch.tensor(v)) for part in ("body", "head")
             for k, v in sorted(host[part].items())]  # fmt: skip
    tensors = [torch.nn.Parameter(t.clone()) for _, t in named]
    torch_opt = torch.optim.Adam(
        [{"params": [(n, p) for (n, _), p in zip(named, tensors, strict=True)][:2]},
         {"params": [(n, p) for (n, _), p in zip(named, tensors, strict=True)][2:], "lr": 0.05}],
        lr=0.01,
    )  # fmt: skip
    for p in tensors:
        p.grad = torch.randn_like(p)
    torch_opt.step()
    checkpoint = {
        "model": {n: p.detach() for (n, _), p in zip(named, tensors, strict=True)},
        "optimizer": torch_opt.state_dict(),
    }
    opt = optim.Adam(groups(placed(jax.tree.map(np.zeros_like, host), layout)), lr=0.01)
    one = optim.Adam(groups(jax.tree.map(jnp.zeros_like, host)), lr=0.01)
    interop.load_torch_checkpoint(opt, checkpoint)
    interop.load_torch_checkpoint(one, checkpoint)
    assert_placed_like_params(opt.params, layout)
    assert_state_placed(opt, layout)
    for a, b in zip(jax.tree.leaves(opt.opt_state), jax.tree.leaves(one.opt_state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    sharding = LAYOUTS[layout]["w"]
    target = {"kernel": jax.ShapeDtypeStruct((64, 24), jnp.float32, sharding=sharding)}
    weight = torch.randn(24, 64)
    out = interop.torch_to_flax({"weight": weight}, target, layouts={"weight": "linear"})
    assert out["kernel"].sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_array_equal(np.asarray(out["kernel"]), weight.numpy().T)
