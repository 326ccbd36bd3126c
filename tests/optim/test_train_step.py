"""``Optimizer.make_train_step``: loss, gradients and update in one jitted program."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxsched import optim
from jaxsched.optim import lr_scheduler
from tests.compile_counter import count_compiles
from tests.optim.harness import TorchTwin, flat, make_tree, two_groups
from tests.optimizer_cases import runs
from tests.torch_reference import relative_difference


def loss_fn(params, x, y):
    """A two-layer regression over the harness tree (features: conv, bias; classifier: w, b)."""
    h = jnp.tanh(x @ params["features"]["conv"] + params["features"]["bias"])
    out = h @ params["classifier"]["w"] + params["classifier"]["b"]
    return jnp.mean((out - y) ** 2)


def torch_loss(tensors, x, y):
    t = {jax.tree_util.keystr(p): v for p, v in tensors.items()}
    h = torch.tanh(x @ t["['features']['conv']"] + t["['features']['bias']"])
    out = h @ t["['classifier']['w']"] + t["['classifier']['b']"]
    return torch.mean((out - y) ** 2)


def batches(steps, n=6, seed=3):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, 3)), rng.normal(size=(n, 2))) for _ in range(steps)]


def tree(dtype):
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), make_tree(0))


@pytest.mark.parametrize(("case", "engine"), runs())
def test_train_step_matches_torch_forward_backward_step(case, engine, precision):
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    kwargs = case.arguments(engine)
    groups = two_groups(tree(dtype), case.second)
    opt = case.jaxsched_class(groups, **kwargs)
    assert {info.engine for info in opt.engine_info()} == {engine}
    twin = TorchTwin(case.torch_class, groups, dtype=getattr(torch, precision), **kwargs)
    base_lrs = [group["lr"] for group in opt.param_groups]
    train_step = opt.make_train_step(loss_fn)
    for i, (x, y) in enumerate(batches(20)):
        loss = train_step(jnp.asarray(x, dtype), jnp.asarray(y, dtype))
        twin.opt.zero_grad()
        tdtype = getattr(torch, precision)
        expected = torch_loss(
            twin.tensors, torch.tensor(x, dtype=tdtype), torch.tensor(y, dtype=tdtype)
        )
        expected.backward()
        twin.opt.step()
        assert float(loss) == pytest.approx(
            expected.item(), rel=1e-5 if precision == "float32" else 1e-10
        )
        for lr, group, torch_group in zip(
            base_lrs, opt.param_groups, twin.opt.param_groups, strict=True
        ):
            group["lr"] = torch_group["lr"] = lr / (1 + 0.5 * i)
    tol = 1e-5 if precision == "float32" else 1e-10
    assert relative_difference(flat(opt.params), twin.params()) < tol


def loss_with_aux(params, x, y):
    loss = loss_fn(params, x, y)
    return loss, {"loss_times_two": 2 * loss}


@pytest.mark.parametrize(("case", "engine"), runs())
def test_train_step_is_grad_then_step_in_one_program(case, engine):
    groups = two_groups(tree(jnp.float32), case.second)
    kwargs = case.arguments(engine)
    one, two = case.jaxsched_class(groups, **kwargs), case.jaxsched_class(groups, **kwargs)
    train_step = one.make_train_step(loss_with_aux, has_aux=True)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    for x, y in batches(10):
        x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
        loss, aux = train_step(x, y=y)
        expected, grads = value_and_grad(two.params, x, y)
        two.step(grads)
        np.testing.assert_allclose(loss, expected, rtol=1e-6)
        np.testing.assert_allclose(aux["loss_times_two"], 2 * expected, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
    assert one.steps_taken == two.steps_taken == 10
    sd_one, sd_two = one.state_dict(), two.state_dict()
    for i, entry in sd_two["state"].items():
        for key, value in entry.items():
            np.testing.assert_allclose(sd_one["state"][i][key], value, rtol=2e-6, atol=1e-7)


def test_train_step_never_recompiles_for_writes_schedulers_or_decay_switches():
    # fused=False: the XLA path has two programs (zero / non-zero weight decay).
    for kwargs in (dict(fused=False), {}):
        opt = optim.Adam(two_groups(tree(jnp.float32), {"lr": 0.003}), lr=0.01, **kwargs)
        scheduler = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        train_step = opt.make_train_step(loss_fn)
        data = batches(12)
        train_step(*data[0])
        with count_compiles() as compiles:
            for i, (x, y) in enumerate(data[1:]):
                opt.param_groups[1]["weight_decay"] = 0.01 * (i % 2)
                opt.param_groups[0]["betas"] = (0.9 - 0.01 * i, 0.999)
                train_step(x, y)
                scheduler.step()
            jax.block_until_ready(opt.params)
        assert compiles() == 0


def test_train_step_takes_a_new_batch_shape_after_a_decay_switch():
    # The general XLA program was compiled ahead of time for the first batch's shapes; a
    # smaller last batch must still run (compiled once more), with the same numbers.
    groups = two_groups(tree(jnp.float32), {"lr": 0.003})
    one = optim.Adam(groups, lr=0.01, fused=False)
    two = optim.Adam(groups, lr=0.01, fused=False)
    train_step = one.make_train_step(loss_fn)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    for n, decay in [(6, 0.0), (6, 0.1), (4, 0.1), (4, 0.0), (6, 0.1)]:
        ((x, y),) = batches(1, n=n)
        for opt in (one, two):
            opt.param_groups[0]["weight_decay"] = decay
        train_step(x, y)
        two.step(value_and_grad(two.params, x, y)[1])
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def test_train_step_follows_add_param_group_and_rejects_a_non_callable():
    full = tree(jnp.float32)
    opt = optim.SGD({"features": full["features"]}, lr=0.1, momentum=0.9)
    train_step = opt.make_train_step(lambda p, x, y: loss_fn({**p, **classifier}, x, y))
    classifier = {"classifier": full["classifier"]}
    ((x, y),) = batches(1)
    train_step(x, y)
    opt.add_param_group({"params": {"classifier": full["classifier"]}, "lr": 0.01})
    full_step = opt.make_train_step(loss_fn)
    before = np.asarray(opt.params["classifier"]["w"])
    full_step(x, y)
    assert not np.allclose(before, opt.params["classifier"]["w"])
    assert opt.steps_taken == 2
    with pytest.raises(TypeError, match="loss_fn must be callable, got int"):
        opt.make_train_step(3)


def test_fused_train_program_copies_no_parameter():
    # The kernels write the new parameters to new buffers in a train step: updating them in
    # place while the loss reads them made XLA copy every parameter twice (5x slower on a
    # ResNet-sized tree).
    opt = optim.Adam(tree(jnp.float32), lr=0.01)
    train_step = opt.make_train_step(loss_fn)
    ((x, y),) = batches(1)
    train_step(x, y)
    assert {i.engine for i in opt.engine_info()} == {"kernel"}
    text = train_step.lower(x, y).compile().as_text()
    shapes = {f"f32[{','.join(map(str, p.shape))}]" for p in jax.tree.leaves(opt.params)}
    copies = [line for line in text.splitlines() if " copy(" in line]
    assert not [line for line in copies if any(f"= {s}" in line for s in shapes)], copies


ACCUMULATION = [
    pytest.param(dict(accumulation_steps=3), id="accumulate"),
    pytest.param(dict(accumulation_steps=3, max_norm=0.5), id="accumulate-clip-norm"),
    pytest.param(dict(max_norm=0.5, norm_type=1.0), id="clip-1-norm"),
    pytest.param(dict(accumulation_steps=2, clip_value=0.05), id="accumulate-clip-value"),
]


@pytest.mark.parametrize("options", ACCUMULATION)
def test_accumulation_and_clipping_follow_torchs_loop(options, x64):
    """nanoGPT's loop: (loss / k).backward() per micro-batch, clip_grad_norm_, step."""
    k = options.get("accumulation_steps", 1)
    t = tree(jnp.float64)
    groups = two_groups(t, {"lr": 0.05})
    opt = optim.AdamW(groups, lr=0.01, weight_decay=0.1)
    twin = TorchTwin(torch.optim.AdamW, groups, lr=0.01, weight_decay=0.1)
    train_step = opt.make_train_step(loss_fn, **options)
    micro = batches(4 * k)
    for s in range(4):
        parts = micro[s * k : (s + 1) * k]
        stacked = [np.stack([b[i] for b in parts]) for i in (0, 1)]
        loss = train_step(*(stacked if k > 1 else parts[0]))
        twin.opt.zero_grad()
        total = 0.0
        for x, y in parts:
            scaled = torch_loss(twin.tensors, torch.tensor(x), torch.tensor(y)) / k
            scaled.backward()
            total += float(scaled.detach())
        params = list(twin.tensors.values())
        if "max_norm" in options:
            torch.nn.utils.clip_grad_norm_(params, options["max_norm"], options.get("norm_type", 2))
        if "clip_value" in options:
            torch.nn.utils.clip_grad_value_(params, options["clip_value"])
        twin.opt.step()
        assert float(loss) == pytest.approx(total, rel=1e-13)
    assert relative_difference(flat(opt.params), twin.params()) < 1e-12


def test_accumulation_checks_its_arguments():
    opt = optim.SGD(tree(jnp.float32), lr=0.1)
    step = opt.make_train_step(loss_fn, accumulation_steps=2)
    x, y = batches(1)[0]
    with pytest.raises(ValueError, match="2 micro-batches along its first axis"):
        step(x, y)
    with pytest.raises(ValueError, match="accumulation_steps must be a positive int"):
        opt.make_train_step(loss_fn, accumulation_steps=0)
    with pytest.raises(ValueError, match="not both"):
        opt.make_train_step(loss_fn, max_norm=1.0, clip_value=1.0)
    with_aux = opt.make_train_step(
        lambda p, x, y: (loss_fn(p, x, y), jnp.sum(x)), has_aux=True, accumulation_steps=2
    )
    xs, ys = np.stack([x, 2 * x]), np.stack([y, y])
    _, aux = with_aux(xs, ys)
    np.testing.assert_allclose(aux, [np.sum(x), 2 * np.sum(x)], rtol=1e-6)
