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

from .models import (
    CONTEXT, GPT_RULES, VOCAB, LinenCNN, LinenGPT, NnxCNN, TorchCNN, TorchGPT,
)  # fmt: skip

STEPS_BEFORE, STEPS_AFTER = 3, 4


def cnn_batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(4, 3, 7, 7)), rng.normal(size=(4, 4))) for _ in range(n)]


def gpt_batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, VOCAB, size=(3, CONTEXT)), rng.integers(0, VOCAB, size=(3, CONTEXT)))
        for _ in range(n)
    ]


def torch_cnn_run(tmp_path):
    """torchvision's recipe in small: SGD + nesterov, no weight decay on norms and biases,
    StepLR; saved after STEPS_BEFORE steps, then continued."""
    torch.manual_seed(0)
    model = TorchCNN().double()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append((name, p))
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 1e-2}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.1, momentum=0.9, nesterov=True,
    )  # fmt: skip
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    batches = cnn_batches(STEPS_BEFORE + STEPS_AFTER)
    trajectory = []
    for step, (x, y) in enumerate(batches):
        if step == STEPS_BEFORE:
            torch.save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "lr_scheduler": sched.state_dict(), "epoch": step},
                tmp_path / "ckpt.pt",
            )  # fmt: skip
        loss = ((model(torch.tensor(x)) - torch.tensor(y)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step >= STEPS_BEFORE:
            trajectory.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return model, trajectory, batches


def cnn_loss(model_def):
    def loss(params, batch_stats, x, y):
        out, updates = model_def.apply(
            {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
        )
        return jnp.mean((out - y) ** 2), updates["batch_stats"]

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def test_torchvision_style_cnn_resumes_in_jax_step_for_step(tmp_path, x64):
    torch_model, trajectory, batches = torch_cnn_run(tmp_path)
    model_def = LinenCNN()
    variables = model_def.init(jax.random.key(0), jnp.ones((1, 7, 7, 3)))
    variables = jax.tree.map(lambda a: a.astype(jnp.float64), variables)
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
            np.testing.assert_allclose(back[name].numpy(), expected, rtol=1e-12, atol=1e-14)
    assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0]
