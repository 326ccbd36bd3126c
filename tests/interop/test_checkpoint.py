"""A torch training run saved mid-way continues in jaxsched step for step, and a jaxsched run
continues in torch: weights, optimizer state, scheduler, through jaxsched.interop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxsched import interop, optim
from jaxsched.optim import lr_scheduler

from .models import CONTEXT, GPT_RULES, VOCAB, LinenCNN, LinenGPT, NnxCNN, TorchCNN, TorchGPT

STEPS_BEFORE, STEPS_AFTER = 3, 4
# float64: rounding only; float32: the contract's trajectory tolerance (tests/torch_reference)
TOLERANCE = {"float64": dict(rtol=1e-12, atol=1e-14), "float32": dict(rtol=1e-5, atol=1e-6)}


def cnn_batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(4, 3, 7, 7)), rng.normal(size=(4, 4))) for _ in range(n)]


def gpt_batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, VOCAB, size=(3, CONTEXT)), rng.integers(0, VOCAB, size=(3, CONTEXT)))
        for _ in range(n)
    ]


def run_saving_midway(model, opt, sched, batches, loss_of, path, step_key):
    """torch's loop over ``batches``, saving the conventional checkpoint before step
    STEPS_BEFORE (its step under ``step_key``); returns the state dicts after each later
    step."""
    trajectory = []
    for step, batch in enumerate(batches):
        if step == STEPS_BEFORE:
            torch.save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "lr_scheduler": sched.state_dict(), step_key: step},
                path,
            )  # fmt: skip
        loss = loss_of(model, *batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step >= STEPS_BEFORE:
            trajectory.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return trajectory


def torch_cnn_run(tmp_path, dtype=torch.float64):
    """torchvision's recipe in small: SGD + nesterov, no weight decay on norms and biases,
    StepLR; saved after STEPS_BEFORE steps, then continued."""
    torch.manual_seed(0)
    model = TorchCNN().to(dtype)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append((name, p))
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 1e-2}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.1, momentum=0.9, nesterov=True,
    )  # fmt: skip
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    batches = cnn_batches(STEPS_BEFORE + STEPS_AFTER)

    def loss_of(model, x, y):
        return ((model(torch.tensor(x, dtype=dtype)) - torch.tensor(y, dtype=dtype)) ** 2).mean()

    path = tmp_path / "ckpt.pt"
    trajectory = run_saving_midway(model, opt, sched, batches, loss_of, path, "epoch")
    return model, trajectory, batches


def cnn_loss(model_def):
    def loss(params, batch_stats, x, y):
        out, updates = model_def.apply(
            {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
        )
        return jnp.mean((out - y) ** 2), updates["batch_stats"]

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


@pytest.mark.parametrize("precision", ["float32", "float64"], indirect=True)
def test_torchvision_style_cnn_resumes_in_jax_step_for_step(tmp_path, precision):
    dtype = {"float32": torch.float32, "float64": torch.float64}[precision]
    torch_model, trajectory, batches = torch_cnn_run(tmp_path, dtype)
    model_def = LinenCNN()
    variables = model_def.init(jax.random.key(0), jnp.ones((1, 7, 7, 3)))
    variables = jax.tree.map(lambda a: a.astype(precision), variables)
    groups = optim.split_groups(
        variables["params"],
        [{"params": lambda name, p: p.ndim > 1, "weight_decay": 0.0}, {"params": "*"}],
    )
    opt = optim.SGD(groups, lr=0.5, momentum=0.9, nesterov=True)  # values come from the ckpt
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    resumed = interop.load_torch_checkpoint(
        opt, tmp_path / "ckpt.pt", variables=variables, schedulers=sched
    )
    assert resumed["epoch"] == STEPS_BEFORE
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-2, 0.0]
    batch_stats = resumed["model"]["batch_stats"]
    grad = cnn_loss(model_def)
    names = [name for name, _ in torch_model.named_parameters()]
    assert len(names) == 11
    for step, (x, y) in enumerate(batches[STEPS_BEFORE:]):
        (_, batch_stats), grads = grad(
            opt.params, batch_stats, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(y)
        )
        opt.step(grads)
        sched.step()
        back = interop.flax_to_torch(
            {"params": opt.params, "batch_stats": batch_stats}, names=torch_model.state_dict()
        )
        for name in names:
            expected = trajectory[step][name].numpy()
            np.testing.assert_allclose(back[name].numpy(), expected, **TOLERANCE[precision])
    assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]


def torch_named_groups(model):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append((name, p))
    return decay, no_decay


@pytest.mark.slow
def test_a_jaxsched_run_continues_in_torch(tmp_path, x64):
    """The reverse: train here, write a checkpoint torch loads with weights_only=True, and
    torch's next steps equal ours."""
    torch.manual_seed(1)
    torch_model = TorchCNN().double()
    model_def = LinenCNN()
    variables = model_def.init(jax.random.key(0), jnp.ones((1, 7, 7, 3)))
    variables = interop.torch_to_flax(
        torch_model.state_dict(), jax.tree.map(lambda a: a.astype(jnp.float64), variables)
    )
    groups = optim.split_groups(
        variables["params"],
        [{"params": lambda name, p: p.ndim > 1, "weight_decay": 1e-2}, {"params": "*"}],
    )
    opt = optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    grad = cnn_loss(model_def)
    batch_stats = variables["batch_stats"]
    batches = cnn_batches(STEPS_BEFORE + STEPS_AFTER, seed=3)
    ours = []
    for step, (x, y) in enumerate(batches):
        if step == STEPS_BEFORE:
            checkpoint = interop.to_torch_checkpoint(
                opt, sched, variables={"params": opt.params, "batch_stats": batch_stats},
                names=torch_model.state_dict(), extra={"epoch": step},
            )  # fmt: skip
            torch.save(checkpoint, tmp_path / "ours.pt")
        (_, batch_stats), grads = grad(
            opt.params, batch_stats, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(y)
        )
        opt.step(grads)
        sched.step()
        if step >= STEPS_BEFORE:
            ours.append(interop.flax_to_torch({"params": opt.params}, names=None))

    loaded = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert loaded["epoch"] == STEPS_BEFORE
    model = TorchCNN().double()
    model.load_state_dict(loaded["model"])
    decay, no_decay = torch_named_groups(model)
    torch_opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 0.5}, {"params": no_decay}], lr=9.0, momentum=0.9
    )
    torch_opt.load_state_dict(loaded["optimizer"])
    assert torch_opt.param_groups[0]["nesterov"] is True
    assert torch_opt.param_groups[0]["weight_decay"] == 1e-2
    torch_sched = torch.optim.lr_scheduler.StepLR(torch_opt, step_size=1)
    torch_sched.load_state_dict(loaded["lr_scheduler"])
    for step, (x, y) in enumerate(batches[STEPS_BEFORE:]):
        loss = ((model(torch.tensor(x)) - torch.tensor(y)) ** 2).mean()
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()
        torch_sched.step()
        for name, p in model.named_parameters():
            np.testing.assert_allclose(
                p.detach().numpy(), ours[step][_our_torch_name(name)].numpy(),
                rtol=1e-12, atol=1e-14,
            )  # fmt: skip
    assert torch_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def _our_torch_name(name):
    """flax_to_torch without names writes linen's own module names (layer1_0)."""
    return name.replace("layer1.0.", "layer1_0.").replace("layer1.1.", "layer1_1.")


def gpt_loss(model_def):
    def loss(params, idx, targets):
        logits = model_def.apply({"params": params}, idx)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))

    return jax.jit(jax.grad(loss))


@pytest.mark.slow
def test_nanogpt_with_tied_embeddings_resumes_in_jax(tmp_path, x64):
    """nanoGPT's configure_optimizers (decay by dim, named), AdamW, a warmup lambda; the tied
    lm_head is one flax leaf."""
    torch.manual_seed(0)
    model = TorchGPT().double()
    params = dict(model.named_parameters())
    decay = [(n, p) for n, p in params.items() if p.dim() >= 2]
    no_decay = [(n, p) for n, p in params.items() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-2, betas=(0.9, 0.95),
    )  # fmt: skip
    warmup = lambda step: min(1.0, (step + 1) / 3)  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup)
    batches = gpt_batches(STEPS_BEFORE + STEPS_AFTER)

    def loss_of(model, idx, targets):
        logits = model(torch.tensor(idx))
        return torch.nn.functional.cross_entropy(
            logits.view(-1, VOCAB), torch.tensor(targets).view(-1)
        )

    path = tmp_path / "ckpt.pt"
    trajectory = run_saving_midway(model, opt, sched, batches, loss_of, path, "iter_num")

    model_def = LinenGPT()
    variables = model_def.init(jax.random.key(0), jnp.ones((1, CONTEXT), jnp.int32))
    start = jax.tree.map(lambda a: a.astype(jnp.float64), variables["params"])
    groups = optim.split_groups(start, [{"params": lambda n, p: p.ndim >= 2}, {"params": "*"}])
    jopt = optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95))
    jsched = lr_scheduler.LambdaLR(jopt, warmup)
    resumed = interop.load_torch_checkpoint(
        jopt, tmp_path / "ckpt.pt", schedulers=jsched, rules=GPT_RULES
    )
    assert resumed["iter_num"] == STEPS_BEFORE
    assert set(resumed["model"]) == {"wte", "wpe", "h_0", "h_1", "ln_f"}
    grad = gpt_loss(model_def)
    for step, (idx, targets) in enumerate(batches[STEPS_BEFORE:]):
        jopt.step(grad(jopt.params, jnp.asarray(idx), jnp.asarray(targets)))
        jsched.step()
        back = interop.flax_to_torch(jopt.params, names=model.state_dict(), rules=GPT_RULES)
        assert back["lm_head.weight"] is back["transformer.wte.weight"]
        for name, expected in trajectory[step].items():
            if name.endswith("attn.bias"):
                continue  # the causal mask, a buffer
            np.testing.assert_allclose(
                back[name].numpy(), expected.numpy(), rtol=1e-12, atol=1e-14, err_msg=name
            )


@nnx.jit
def nnx_grads(model, x, y):
    return nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)  # a State of the Params


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types:FutureWarning")
def test_an_nnx_model_resumes_from_torch(tmp_path, x64):
    torch_model, trajectory, batches = torch_cnn_run(tmp_path)
    model = NnxCNN(nnx.Rngs(0), dtype=jnp.float64)
    groups = optim.split_groups(
        nnx.state(model, nnx.Param), [{"params": lambda n, p: p.ndim > 1}, {"params": "*"}]
    )
    opt = optim.SGD(groups, lr=0.5, momentum=0.9, nesterov=True)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    with pytest.warns(UserWarning, match="4 torch tensors were rounded.*bn1.running_mean"):
        out = interop.load_torch_checkpoint(
            opt, tmp_path / "ckpt.pt", variables=model, schedulers=sched
        )  # nnx keeps batch statistics in float32
    assert out["model"] is model  # updated in place: batch statistics included
    saved_var = torch.load(tmp_path / "ckpt.pt")["model"]["bn1.running_var"].numpy()
    assert model.bn1.var[...].dtype == jnp.float32  # nnx keeps batch statistics in float32
    np.testing.assert_array_equal(model.bn1.var[...], saved_var.astype(np.float32))
    for step, (x, y) in enumerate(batches[STEPS_BEFORE:]):
        opt.step(nnx_grads(model, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(y)))
        sched.step()
        nnx.update(model, opt.params)
        back = interop.flax_to_torch(model, names=torch_model.state_dict())
        for name, _ in torch_model.named_parameters():
            np.testing.assert_allclose(
                back[name].numpy(), trajectory[step][name].numpy(), rtol=1e-12, atol=1e-14
            )


class TenSquare(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(10)])


def ten_square_checkpoint(named: bool, reverse: bool = False):
    torch.manual_seed(0)
    model = TenSquare().double()
    named_params = list(model.named_parameters())
    if reverse:
        named_params = named_params[::-1]
    opt = torch.optim.Adam(named_params if named else [p for _, p in named_params], lr=0.1)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    return model, {"model": model.state_dict(), "optimizer": opt.state_dict()}


def ten_square_optimizer():
    params = {"layers": {i: {"kernel": jnp.zeros((4, 4)), "bias": jnp.zeros(4)} for i in range(10)}}
    return optim.Adam(params, lr=0.1)


def test_ten_square_layers_unnamed_and_shuffled_is_refused_not_misloaded(x64):
    _, checkpoint = ten_square_checkpoint(named=False, reverse=True)
    opt = ten_square_optimizer()
    before = jax.tree.map(np.asarray, opt.params)
    with pytest.raises(ValueError, match=r"share the shape \(4, 4\).*by_model_order=True"):
        interop.load_torch_checkpoint(opt, checkpoint)
    # nothing changed
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(opt.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert opt.state_dict()["state"] == {}


@pytest.mark.parametrize(("named", "reverse"), [(True, True), (True, False), (False, False)])
def test_ten_square_layers_named_or_in_model_order_load_exactly(x64, named, reverse):
    model, checkpoint = ten_square_checkpoint(named=named, reverse=reverse)
    opt = ten_square_optimizer()
    interop.load_torch_checkpoint(opt, checkpoint, by_model_order=not named)
    order = [name for name, _ in model.named_parameters()]
    order = order[::-1] if reverse else order
    torch_state = {name: checkpoint["optimizer"]["state"][i] for i, name in enumerate(order)}
    ours = opt.state_dict()
    for pid, flax_name in zip(
        ours["param_groups"][0]["params"], ours["param_groups"][0]["param_names"], strict=True
    ):
        layer, leaf = flax_name.split(".")[1:]
        torch_name = f"layers.{layer}.{'weight' if leaf == 'kernel' else 'bias'}"
        expected = torch_state[torch_name]["exp_avg"].numpy()
        got = ours["state"][pid]["exp_avg"]
        np.testing.assert_array_equal(got, expected.T if leaf == "kernel" else expected)


def small_linear_checkpoint(optimizer_cls, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    opt = optimizer_cls(model.named_parameters(), **kwargs)
    model(torch.randn(4, 3, dtype=torch.float64)).sum().backward()
    opt.step()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    return model, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                   "scaler": scaler.state_dict(), "epoch": 7}  # fmt: skip


def small_linear_params():
    return {"0": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}}


def test_the_weights_are_set_with_the_state_and_the_scaler_loads(x64):
    """One source of truth: the optimizer's parameters come from the checkpoint in the same
    call (forgetting them used to train on from the old weights)."""
    from jaxsched.amp import GradScaler

    model, checkpoint = small_linear_checkpoint(torch.optim.Adam, lr=0.1)
    opt = optim.Adam(small_linear_params(), lr=0.1)
    scaler = GradScaler("cpu")
    out = interop.load_torch_checkpoint(opt, checkpoint, scaler=scaler)
    np.testing.assert_array_equal(opt.params["0"]["kernel"], model[0].weight.detach().numpy().T)
    assert out == {"model": out["model"], "epoch": 7}
    assert scaler.get_scale() == 1024.0 and scaler.get_growth_interval() == 3
    # and back: the scaler's state dict as torch reads it
    written = interop.to_torch_checkpoint(opt, scaler=scaler)
    torch_scaler = torch.amp.GradScaler("cpu")
    torch_scaler.load_state_dict(written["scaler"])
    assert torch_scaler.get_scale() == 1024.0


def test_a_checkpoint_weights_only_refuses_says_how_to_load_it(tmp_path, x64):
    import argparse

    _, checkpoint = small_linear_checkpoint(torch.optim.SGD, lr=0.1)
    torch.save({**checkpoint, "args": argparse.Namespace(lr=0.1)}, tmp_path / "tv.pt")
    opt = optim.SGD(small_linear_params(), lr=0.1)
    with pytest.raises(ValueError, match=r"torchvision's reference saves its argparse 'args'"):
        interop.load_torch_checkpoint(opt, tmp_path / "tv.pt")
    trusted = torch.load(tmp_path / "tv.pt", weights_only=False)
    assert interop.load_torch_checkpoint(opt, trusted)["args"].lr == 0.1


def test_factored_state_and_lbfgs_are_refused_not_guessed(x64):
    _, checkpoint = small_linear_checkpoint(torch.optim.Adafactor, lr=0.01)
    opt = optim.Adafactor(small_linear_params(), lr=0.01)
    with pytest.raises(
        NotImplementedError, match=r"'row_var' of shape .* cannot follow the linear"
    ):
        interop.load_torch_checkpoint(opt, checkpoint)
    with pytest.raises(NotImplementedError, match="LBFGS keeps its history"):
        interop.load_torch_checkpoint(optim.LBFGS(small_linear_params()), checkpoint)


def test_missing_entries_and_unnamed_groups_are_named(x64):
    _, checkpoint = small_linear_checkpoint(torch.optim.SGD, lr=0.1, momentum=0.9)
    opt = optim.SGD(small_linear_params(), lr=0.1, momentum=0.9)
    with pytest.raises(KeyError, match="no 'lr_scheduler' entry"):
        interop.load_torch_checkpoint(
            opt, checkpoint, schedulers=lr_scheduler.StepLR(opt, step_size=1)
        )
    saved = checkpoint["optimizer"]
    hyper = {
        k: v for k, v in saved["param_groups"][0].items() if k not in ("params", "param_names")
    }
    groups = [{**hyper, "params": [0]}, {**hyper, "params": [1]}]
    unnamed = {**checkpoint, "optimizer": {"state": saved["state"], "param_groups": groups}}
    with pytest.raises(ValueError, match="several param_groups and no param_names"):
        interop.load_torch_checkpoint(opt, unnamed)


def test_the_functional_route_takes_the_loaded_state_and_gives_it_back(x64):
    """Users with their own jitted step: the optimizer converts, ``tx``/``opt_state`` run."""
    model, checkpoint = small_linear_checkpoint(torch.optim.AdamW, lr=0.1, weight_decay=0.1)
    opt = optim.AdamW(small_linear_params(), lr=0.1, weight_decay=0.1)
    interop.load_torch_checkpoint(opt, checkpoint)
    tx, state, params = opt.tx, opt.opt_state, opt.params
    torch_opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    torch_opt.load_state_dict(checkpoint["optimizer"])
    rng = np.random.default_rng(0)
    for _ in range(3):
        g_w, g_b = rng.normal(size=(2, 3)), rng.normal(size=2)
        model[0].weight.grad, model[0].bias.grad = torch.tensor(g_w), torch.tensor(g_b)
        torch_opt.step()
        grads = {"0": {"kernel": jnp.asarray(g_w.T), "bias": jnp.asarray(g_b)}}
        updates, state = jax.jit(tx.update)(grads, state, params)
        params = jax.tree.map(jnp.add, params, updates)
    np.testing.assert_allclose(
        params["0"]["kernel"], model[0].weight.detach().numpy().T, rtol=1e-12
    )
    opt.opt_state, opt.params = state, params  # back into the optimizer, then to torch
    written = interop.to_torch_checkpoint(opt, names=model.state_dict())
    assert written["optimizer"]["param_groups"][0]["param_names"] == ["0.weight", "0.bias"]
    assert int(written["optimizer"]["state"][0]["step"]) == 4
    np.testing.assert_allclose(
        written["optimizer"]["state"][0]["exp_avg"].numpy(),
        torch_opt.state_dict()["state"][0]["exp_avg"].numpy(), rtol=1e-12,
    )  # fmt: skip
