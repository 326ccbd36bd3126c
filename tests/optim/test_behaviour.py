"""Optimizer behaviour beyond parity: recompiles, errors, add_param_group, opt_state, flax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxsched
from jaxsched import optim
from jaxsched.optim._param_names import dotted
from tests.compile_counter import count_compiles
from tests.optim.harness import TorchTwin, flat, make_tree, random_grads, two_groups
from tests.torch_reference import relative_difference


def tree32(seed=0):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), make_tree(seed))


def grads32(seed=1, steps=1):
    return [
        jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g) for g in random_grads(seed, steps)
    ]


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Rprop", "Adafactor", "NAdam"])
def test_writing_every_numeric_hyperparameter_every_step_never_recompiles(name):
    opt = getattr(optim, name)(two_groups(tree32(), {"lr": 0.001}), lr=0.01)
    grads = grads32(steps=30)
    opt.step(grads[0])
    with count_compiles() as compiles:
        for i, g in enumerate(grads[1:]):
            for group in opt.param_groups:
                group["lr"] = 0.01 / (1 + i)
                if "betas" in group:
                    group["betas"] = (0.9 - 0.001 * i, 0.999)
                if "weight_decay" in group:  # 0 -> non-zero -> 0 -> ... switches executables
                    group["weight_decay"] = 1e-4 * (i % 3)
                if "momentum" in group and name != "RMSprop":
                    group["momentum"] = 0.5 + 0.01 * i
            opt.step(g)
            np.asarray(opt.params["classifier"]["b"])  # results are materialised each step
        assert compiles() == 0


def test_structural_flag_change_rebuilds_and_keeps_state():
    opt = optim.SGD(tree32(), lr=0.1, momentum=0.9)
    grads = grads32(steps=3)
    opt.step(grads[0])
    buffer = opt.state_dict()["state"][0]["momentum_buffer"]
    opt.param_groups[0]["nesterov"] = True
    opt.step(grads[1])
    assert opt.param_groups[0]["nesterov"] is True
    assert not np.allclose(opt.state_dict()["state"][0]["momentum_buffer"], buffer)
    with pytest.raises(ValueError, match="alters the optimizer state's layout"):
        adam = optim.Adam(tree32())
        adam.step(grads[0])
        adam.param_groups[0]["amsgrad"] = True
        adam.step(grads[1])


def test_reading_param_groups_needs_no_device_and_sees_writes():
    opt = optim.Adam(two_groups(tree32(), {"lr": 1e-4}), lr=1e-3)
    assert opt.param_groups[1]["lr"] == 1e-4 and isinstance(opt.param_groups[1]["lr"], float)
    opt.param_groups[1]["initial_lr"] = 1e-4  # a scheduler's key: appended, stored, harmless
    assert list(opt.param_groups[1])[-1] == "initial_lr"
    opt.step(grads32()[0])
    assert jaxsched.get_hyperparams(opt.opt_state)[1]["lr"] == pytest.approx(1e-4)


def test_bad_groups_and_grads_raise_like_torch():
    tree = tree32()
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD(
            [{"params": {"features": tree["features"]}}, {"params": {"features": tree["features"]}}]
        )
    with pytest.raises(ValueError, match=r"floating-point.*\['n'\].*int32"):
        optim.SGD({"w": jnp.ones(2), "n": jnp.ones(2, jnp.int32)})
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.SGD(tree, lr=-1.0)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.Adam([{"params": tree, "betas": (0.9, 1.5)}])
    opt = optim.Adam(tree)
    before = jax.tree.map(np.asarray, opt.params)
    bad = grads32()[0]
    bad["classifier"]["w"] = jnp.ones((2, 4))
    with pytest.raises(ValueError, match=r"\['classifier'\]\['w'\] has shape \(2, 4\)"):
        opt.step(bad)
    missing = grads32()[0]
    del missing["features"]["bias"]
    with pytest.raises(ValueError, match=r"missing at \['features'\]\['bias'\]"):
        opt.step(missing)
    wrong_dtype = jax.tree.map(lambda x: x.astype(jnp.bfloat16), grads32()[0])
    with pytest.raises(ValueError, match="dtype bfloat16"):
        opt.step(wrong_dtype)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.all(a == b)), before, opt.params))
    assert int(opt.opt_state.inner[0].count) == 0


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("decay_written", [False, True])
def test_bad_grads_raise_before_anything_runs_on_every_executable(fused, decay_written, x64):
    # The jitted step checks the gradients when it is traced; the XLA path's ahead-of-time
    # compiled variant (taken once a zero weight decay is made non-zero) checks them itself.
    # (Under x64, so that float64 grads for float32 params stay float64: without it, jax
    # turns any float64 input into float32 before a jitted function sees it.)
    opt = optim.Adam(tree32(), fused=fused)
    opt.step(grads32()[0])
    if decay_written:
        opt.param_groups[0]["weight_decay"] = 0.01
        opt.step(grads32(seed=2)[0])
    before = jax.tree.map(np.asarray, opt.params)
    for change, message in [
        (lambda x: jnp.ones((2, 4)) if x.shape == (4, 2) else x, r"has shape \(2, 4\)"),
        (lambda x: x.astype(jnp.float16), "dtype float16"),
        (lambda x: np.asarray(x, np.float64), "dtype float64"),
    ]:
        with pytest.raises(ValueError, match=message):
            opt.step(jax.tree.map(change, grads32()[0]))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.all(a == b)), before, opt.params))
    opt.step(grads32(seed=3)[0])  # still usable: nothing was donated
    assert int(opt.opt_state.inner[0].count) == 2 + decay_written


def test_load_state_dict_mismatch_raises_and_changes_nothing():
    opt = optim.Adam(two_groups(tree32(), {"lr": 0.5}), lr=0.1)
    opt.step(grads32()[0])
    good = opt.state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": good["param_groups"][:1]})
    bad = {
        "state": good["state"],
        "param_groups": [good["param_groups"][0], {**good["param_groups"][1], "params": [2]}],
    }
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        opt.load_state_dict(bad)
    wrong_shape = {
        "state": {**good["state"], 0: {**good["state"][0], "exp_avg": np.zeros(7)}},
        "param_groups": good["param_groups"],
    }
    with pytest.raises(ValueError, match=r"exp_avg of shape \(7,\) for parameter 0"):
        opt.load_state_dict(wrong_shape)
    after = opt.state_dict()
    assert after["param_groups"] == good["param_groups"]
    for i in good["state"]:
        for k in good["state"][i]:
            np.testing.assert_array_equal(after["state"][i][k], good["state"][i][k])


def test_add_param_group_matches_torch():
    tree = make_tree()
    ours = optim.SGD(
        {"features": jax.tree.map(jnp.asarray, tree["features"])}, lr=0.05, momentum=0.9
    )
    theirs = TorchTwin(
        torch.optim.SGD, [{"params": {"features": tree["features"]}}], lr=0.05, momentum=0.9
    )
    grads = random_grads(3, 20)
    for g in grads[:10]:
        ours.step(jax.tree.map(jnp.asarray, {"features": g["features"]}))
        theirs.step({"features": g["features"]})
    ours.add_param_group(
        {"params": {"classifier": jax.tree.map(jnp.asarray, tree["classifier"])}, "lr": 0.01}
    )
    extra = TorchTwin(torch.optim.SGD, [{"params": {"classifier": tree["classifier"]}}])
    named = [(dotted(path), t) for path, t in extra.tensors.items()]
    theirs.opt.add_param_group({"params": named, "lr": 0.01})
    theirs.tensors.update(extra.tensors)
    assert list(ours.param_groups[1]) == list(theirs.opt.param_groups[1])
    for g in grads[10:]:
        ours.step(jax.tree.map(jnp.asarray, g))
        theirs.step(g)
    assert relative_difference(flat(ours.params), theirs.params()) < 1e-5  # float32 vs float64
    with pytest.raises(ValueError, match="more than one parameter group"):
        ours.add_param_group({"params": {"classifier": {"w": jnp.ones((4, 2))}}})


def test_users_own_jitted_step_with_tx_and_opt_state_keeps_the_view_live():
    opt = optim.Adam(two_groups(tree32(), {"lr": 1e-4}), lr=1e-3)
    tx, state, params = opt.tx, opt.opt_state, opt.params

    @jax.jit
    def train_step(params, state, grads):
        state = jaxsched.set_hyperparams(state, 0, lr=state.hyperparams[0]["lr"] * 0.5)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for g in grads32(steps=3):
        params, state = train_step(params, state, g)
    opt.opt_state = state
    opt.params = params
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**3)
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-4)
    assert opt.state_dict()["state"][0]["step"] == 3
    opt.zero_grad()  # a documented no-op
    opt.step(grads32()[0])


def test_flax_linen_and_nnx_parameters():
    flax = pytest.importorskip("flax")  # in the test extra; skipped only in a bare install
    from flax import linen as nn
    from flax import nnx

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1, name="head")(nn.relu(nn.Dense(8, name="body")(x)))

    x = jnp.ones((4, 3))
    variables = MLP().init(jax.random.key(0), x)
    opt = optim.SGD(
        [
            {"params": {"params": {"body": variables["params"]["body"]}}},
            {"params": {"params": {"head": variables["params"]["head"]}}, "lr": 0.0},
        ],
        lr=0.1,
        momentum=0.9,
    )
    loss = lambda p: jnp.mean(MLP().apply(p, x) ** 2)  # noqa: E731
    head_before = np.asarray(opt.params["params"]["head"]["kernel"])
    for _ in range(3):
        opt.step(jax.grad(loss)(opt.params))
    np.testing.assert_array_equal(opt.params["params"]["head"]["kernel"], head_before)  # lr 0

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    nopt = optim.Adam(nnx.state(model, nnx.Param), lr=0.01)

    def nnx_loss(state):
        m = nnx.merge(nnx.graphdef(model), state)
        return jnp.mean(m(x) ** 2)

    first = float(nnx_loss(nopt.params))
    for _ in range(5):
        nopt.step(jax.grad(nnx_loss)(nopt.params))
    nnx.update(model, nopt.params)
    assert float(jnp.mean(model(x) ** 2)) < first
    assert flax is not None


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam"])
def test_turning_weight_decay_on_and_off_mid_run_matches_torch(name):
    """The zero-decay fast step and the general step agree with torch across the switch."""
    tree = make_tree()
    kwargs = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    ours = getattr(optim, name)(two_groups(jax.tree.map(jnp.asarray, tree), {}), **kwargs)
    theirs = TorchTwin(
        getattr(torch.optim, name), two_groups(tree, {}), dtype=torch.float32, **kwargs
    )
    for i, g in enumerate(random_grads(6, 30)):
        if i in (10, 20):
            value = 0.1 if i == 10 else 0.0
            ours.param_groups[1]["weight_decay"] = theirs.opt.param_groups[1]["weight_decay"] = (
                value
            )
        ours.step(jax.tree.map(jnp.asarray, g))
        theirs.step(g)
    assert relative_difference(flat(ours.params), theirs.params()) < 1e-5


def test_state_split_across_processes_names_orbax_for_state_dict():
    # A multi-process array (jax.distributed) is not fully addressable from one process; a
    # stand-in with the same attribute exercises the check state_dict() runs on every array.
    from jaxsched.optim._state_dict import host_copy

    class Remote:
        is_fully_addressable = False

    with pytest.raises(RuntimeError, match=r"split across processes.*orbax"):
        host_copy(Remote())
    np.testing.assert_array_equal(host_copy(jnp.arange(3.0)), np.arange(3.0))


def test_loads_and_flags_switched_back_reuse_their_programs():
    from tests.compile_counter import count_compiles

    tree = {"a": jnp.ones((3, 2)), "b": jnp.ones(4)}
    grads = jax.tree.map(lambda x: 0.1 * x, tree)
    for opt in (
        optim.SGD(tree, lr=0.1, momentum=0.9),
        optim.SGD(tree, lr=0.1, momentum=0.9, fused=False),
    ):
        opt.step(grads)
        saved = opt.state_dict()
        opt.load_state_dict(saved)  # (the first load compiles its small copy helpers)
        opt.step(grads)
        opt.param_groups[0]["nesterov"] = True
        opt.step(grads)  # a new configuration: compiles once
        opt.param_groups[0]["nesterov"] = False
        with count_compiles() as compiles:
            opt.step(grads)  # back to the first configuration
            opt.load_state_dict(saved)
            opt.step(grads)
            opt.load_state_dict(saved)
            opt.step(grads)
            jax.block_until_ready(opt.params)
        assert compiles() == 0


NONFINITE_CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", dict(lr=0.1)),
    ("AdamW", dict(lr=0.1, amsgrad=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adadelta", dict(lr=0.1)),
    ("Adamax", dict(lr=0.1)),
    ("ASGD", dict(lr=0.1)),
    ("NAdam", dict(lr=0.1)),
    ("RAdam", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.1, momentum=0.5)),
    ("Rprop", dict(lr=0.1)),
    ("Adafactor", dict(lr=0.1)),
]


@pytest.mark.parametrize(("name", "kwargs"), NONFINITE_CASES, ids=[c[0] for c in NONFINITE_CASES])
@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"]
)
def test_non_finite_gradients_spread_as_in_torch(name, kwargs, bad, x64):
    """A NaN or an infinity in one element of one gradient: every element ends where torch
    puts it (NaN where torch has NaN, the same infinities, the rest equal)."""
    start = np.array([1.0, 2.0, -1.5, 0.5])
    tensor = torch.nn.Parameter(torch.tensor(start))
    theirs = getattr(torch.optim, name)([tensor], **kwargs)
    ours = getattr(optim, name)({"w": jnp.asarray(start)}, **kwargs)
    for i in range(3):
        g = np.array([0.3, -0.2, 0.1, 0.4]) * (i + 1)
        if i == 1:
            g[2] = bad
        tensor.grad = torch.tensor(g)
        theirs.step()
        ours.step({"w": jnp.asarray(g)})
    expected, got = tensor.detach().numpy(), np.asarray(ours.params["w"])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "momenta",
    [[0, 0, 0.9, 0.9], [0.9, 0, 0.9, 0.9], [0.9, 0.9, 0, 0], [0, 0.5, 0, 0.9]],
    ids=["0-then-0.9", "0.9-0-0.9", "0.9-then-0", "0-0.5-0-0.9"],
)
@pytest.mark.parametrize("fused", [None, False], ids=["kernel", "xla"])
def test_sgd_momentum_written_mid_run_matches_torch(momenta, fused, x64):
    """torch starts the buffer from the gradient at the first step with momentum and leaves it
    untouched at momentum 0; the state dict has it exactly when torch's does."""
    start = np.array([1.0, 2.0, -0.5])
    tensor = torch.nn.Parameter(torch.tensor(start))
    theirs = torch.optim.SGD([tensor], lr=0.1, momentum=momenta[0], dampening=0.1)
    ours = optim.SGD({"w": jnp.asarray(start)}, lr=0.1, momentum=momenta[0], dampening=0.1,
                     fused=fused)  # fmt: skip
    for i, m in enumerate(momenta):
        theirs.param_groups[0]["momentum"] = ours.param_groups[0]["momentum"] = m
        g = np.array([1.0, -0.5, 0.25]) * (i + 1)
        tensor.grad = torch.tensor(g)
        theirs.step()
        ours.step({"w": jnp.asarray(g)})
        np.testing.assert_allclose(np.asarray(ours.params["w"]), tensor.detach().numpy(),
                                   rtol=1e-14)  # fmt: skip
        theirs_state = theirs.state_dict()["state"]
        ours_state = ours.state_dict()["state"]
        assert list(ours_state.get(0, {})) == list(theirs_state.get(0, {}))
        if 0 in theirs_state:
            expected = theirs_state[0]["momentum_buffer"].numpy()
            np.testing.assert_allclose(ours_state[0]["momentum_buffer"], expected, rtol=1e-14)
    # and a torch state dict taken mid-way resumes with the same rule
    resumed = optim.SGD({"w": jnp.asarray(start)}, lr=0.1, momentum=momenta[-1], dampening=0.1,
                        fused=fused)  # fmt: skip
    resumed.load_state_dict(theirs.state_dict())
    resumed.params = {"w": jnp.asarray(tensor.detach().numpy())}
    g = np.array([0.3, 0.2, -0.1])
    tensor.grad = torch.tensor(g)
    theirs.step()
    resumed.step({"w": jnp.asarray(g)})
    np.testing.assert_allclose(np.asarray(resumed.params["w"]), tensor.detach().numpy(),
                               rtol=1e-14)  # fmt: skip


def test_param_groups_hold_their_optimizer_weakly():
    import copy
    import gc
    import weakref

    opt = optim.SGD({"w": jnp.ones(2)}, lr=0.1)
    group = opt.param_groups[0]
    assert opt not in gc.get_referents(group)  # no group -> optimizer reference cycle
    copied = copy.deepcopy(opt.param_groups)  # copies the values, not the optimizer
    assert copied[0]["lr"] == 0.1 and copied[0]._owner() is opt
    alive = weakref.ref(opt)
    del opt, copied
    gc.collect()
    assert alive() is None
    group["lr"] = 0.5  # a group outliving its optimizer is a plain mapping
    assert group["lr"] == 0.5
    with pytest.raises(ReferenceError, match="no longer exists"):
        group["params"]


@pytest.mark.parametrize("fused", [None, False])
def test_del_frees_the_optimizer_at_once_as_torch(fused):
    """No reference cycle through the compiled programs, the scheduler or a train step: after
    `del`, the optimizer is gone without a cycle collection (torch's scheduler tests check it)."""
    import gc
    import weakref

    from jaxsched.optim import lr_scheduler

    gc.disable()
    try:
        opt = optim.AdamW({"w": jnp.ones(3)}, lr=0.1, fused=fused)
        alive = weakref.ref(opt)
        opt.step({"w": jnp.ones(3)})
        with pytest.raises(ValueError):
            opt.step({"w": jnp.ones(4)})  # traces the mismatch path too
        sched = lr_scheduler.StepLR(opt, 2)
        sched.step()
        train_step = opt.make_train_step(lambda p, x: jnp.sum(p["w"] * x))
        train_step(jnp.ones(3))
        opt.state_dict()
        del opt, sched, train_step
        assert alive() is None
    finally:
        gc.enable()


def test_two_optimizers_on_one_model_match_torchs_two_optimizers(x64):
    """torch's pattern for GANs or Muon + AdamW: each optimizer owns a part of one tree; one
    gradient tree feeds both; stepping one leaves the other part alone (the same arrays)."""
    rng = np.random.default_rng(9)
    params = {"hidden": {"w": rng.normal(size=(4, 6))}, "rest": {"b": rng.normal(size=(6,))}}
    grads = [jax.tree.map(lambda x: rng.normal(size=np.shape(x)), params) for _ in range(8)]
    muon = optim.Muon(params["hidden"], lr=0.02)
    adamw = optim.AdamW(params["rest"], lr=3e-3, weight_decay=0.01)
    for g in grads:
        rest_before = adamw.params["b"]
        muon.step(g["hidden"])
        assert adamw.params["b"] is rest_before  # untouched by the other optimizer
        adamw.step(g["rest"])
    model = {"hidden": muon.params, "rest": adamw.params}  # the whole tree, nothing copied
    assert model["rest"]["b"] is adamw.params["b"]
    w = torch.tensor(params["hidden"]["w"].T, requires_grad=True)  # torch's (out, in)
    b = torch.tensor(params["rest"]["b"], requires_grad=True)
    t_muon = torch.optim.Muon([w], lr=0.02)
    t_adamw = torch.optim.AdamW([b], lr=3e-3, weight_decay=0.01)
    for g in grads:
        w.grad, b.grad = torch.tensor(g["hidden"]["w"].T), torch.tensor(g["rest"]["b"])
        t_muon.step()
        t_adamw.step()
    np.testing.assert_allclose(model["hidden"]["w"], w.detach().numpy().T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model["rest"]["b"], b.detach().numpy(), rtol=0, atol=1e-12)
