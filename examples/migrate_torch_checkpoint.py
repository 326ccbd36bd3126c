"""Migrate a torch training run to JAX mid-way, and hand it back, with jaxsched.interop.

Run:  python examples/migrate_torch_checkpoint.py [--before 4 --after 6]

A torchvision-style CNN (convolutions, BatchNorm, a residual block, GroupNorm, a classifier) is
trained in torch with torchvision's recipe in small: SGD with Nesterov momentum, no weight
decay on norms and biases, StepLR.  After ``--before`` steps torch saves the usual checkpoint
(``{"model", "optimizer", "lr_scheduler", "epoch"}``).  The run then continues twice: in torch,
and in JAX from ``torch.load`` of that file through ``interop.load_torch_checkpoint`` (weights
by names with their layouts, momentum buffers, the groups' hyperparameters, the scheduler).
Each step prints the largest relative difference between the two runs' parameters (float64).
Finally the JAX run writes a checkpoint torch loads with ``weights_only=True`` and continues.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # float64 on both sides: differences are rounding

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import linen as nn  # noqa: E402

from jaxsched import interop, optim  # noqa: E402
from jaxsched.optim import lr_scheduler  # noqa: E402


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.layer1 = torch.nn.Sequential(
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
        )
        self.norm = torch.nn.GroupNorm(2, 8)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.norm(self.layer1(x) + x))
        return self.fc(x.mean(dim=(2, 3)))


class FlaxNet(nn.Module):
    """The same network as a flax user names it (linen's ``layer1_0`` is torch's
    ``layer1.0``; ``kernel``/``scale`` are torch's ``weight``)."""

    @nn.compact
    def __call__(self, x):
        bn = dict(use_running_average=False, momentum=0.9, epsilon=1e-5)
        x = nn.relu(
            nn.BatchNorm(name="bn1", **bn)(
                nn.Conv(8, (3, 3), padding="VALID", use_bias=False, name="conv1")(x)
            )
        )
        y = nn.BatchNorm(name="layer1_1", **bn)(nn.Conv(8, (3, 3), padding=1, name="layer1_0")(x))
        x = nn.relu(nn.GroupNorm(num_groups=2, epsilon=1e-5, name="norm")(y + x))
        return nn.Dense(5, name="fc")(x.mean(axis=(1, 2)))


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(8, 3, 9, 9)), rng.integers(0, 5, size=8)) for _ in range(n)]


def torch_groups(model):
    """torchvision's set_weight_decay in small: no decay on norms' and biases' parameters."""
    decay = [(n, p) for n, p in model.named_parameters() if p.ndim > 1]
    rest = [(n, p) for n, p in model.named_parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": 1e-3}, {"params": rest, "weight_decay": 0.0}]


def torch_step(model, opt, sched, x, y):
    loss = torch.nn.functional.cross_entropy(model(torch.tensor(x)), torch.tensor(y))
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.detach())


def max_relative(variables, model):
    """The largest relative difference between flax weights and a torch model's parameters."""
    mine = interop.flax_to_torch(variables, names=model.state_dict())
    worst = 0.0
    for name, p in model.named_parameters():
        a, b = mine[name].numpy(), p.detach().numpy()
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=int, default=4)
    parser.add_argument("--after", type=int, default=6)
    args = parser.parse_args()
    data = batches(args.before + 2 * args.after)
    workdir = Path(tempfile.mkdtemp())

    torch.manual_seed(0)
    model = TorchNet().double()
    opt = torch.optim.SGD(torch_groups(model), lr=0.1, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for x, y in data[: args.before]:
        torch_step(model, opt, sched, x, y)
    torch.save(
        {"model": model.state_dict(), "optimizer": opt.state_dict(),
         "lr_scheduler": sched.state_dict(), "epoch": args.before},
        workdir / "torch.pt",
    )  # fmt: skip
    print(f"torch: {args.before} steps, saved {{model, optimizer, lr_scheduler, epoch}}")

    # the JAX side of the recipe: the same groups by the same rule, any starting values
    module = FlaxNet()
    variables = module.init(jax.random.key(0), jnp.ones((1, 9, 9, 3)))
    variables = jax.tree.map(lambda a: a.astype(jnp.float64), variables)  # torch's dtype
    groups = optim.split_groups(
        variables["params"], [{"params": lambda name, p: p.ndim > 1}, {"params": "*"}]
    )
    jopt = optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
    jsched = lr_scheduler.StepLR(jopt, step_size=3, gamma=0.5)
    resumed = interop.load_torch_checkpoint(
        jopt, workdir / "torch.pt", variables=variables, schedulers=jsched
    )
    batch_stats = resumed["model"]["batch_stats"]
    print(f"jaxsched: resumed at epoch {resumed['epoch']}, lr {jsched.get_last_lr()}, "
          f"weight decay {[g['weight_decay'] for g in jopt.param_groups]}")  # fmt: skip

    @jax.jit
    def grads_of(params, batch_stats, x, y):
        def loss(params):
            logits, updates = module.apply(
                {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
            )
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(logp[jnp.arange(len(y)), y]), updates["batch_stats"]

        return jax.grad(loss, has_aux=True)(params)

    def current():
        return {"params": jopt.params, "batch_stats": batch_stats}

    def jax_step(x, y):
        nonlocal batch_stats
        grads, batch_stats = grads_of(jopt.params, batch_stats, x.transpose(0, 2, 3, 1), y)
        jopt.step(grads)
        jsched.step()

    print("step  lr       max rel. difference of the parameters (torch vs jaxsched)")
    for step, (x, y) in enumerate(data[args.before : args.before + args.after], args.before):
        torch_step(model, opt, sched, x, y)
        jax_step(x, y)
        print(f"{step:4d}  {jsched.get_last_lr()[0]:.4f}   {max_relative(current(), model):.2e}")

    # and back: torch continues from the JAX run's checkpoint
    checkpoint = interop.to_torch_checkpoint(
        jopt, jsched, variables={"params": jopt.params, "batch_stats": batch_stats},
        names=model.state_dict(), extra={"epoch": args.before + args.after},
    )  # fmt: skip
    torch.save(checkpoint, workdir / "from_jax.pt")
    loaded = torch.load(workdir / "from_jax.pt", weights_only=True)
    model2 = TorchNet().double()
    model2.load_state_dict(loaded["model"])
    opt2 = torch.optim.SGD(torch_groups(model2), lr=0.1, momentum=0.9)
    opt2.load_state_dict(loaded["optimizer"])
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=3)
    sched2.load_state_dict(loaded["lr_scheduler"])
    print("torch resumed from jaxsched's checkpoint (torch.load weights_only=True):")
    for step, (x, y) in enumerate(data[args.before + args.after :], args.before + args.after):
        torch_step(model2, opt2, sched2, x, y)
        jax_step(x, y)
        print(f"{step:4d}  {jsched.get_last_lr()[0]:.4f}   {max_relative(current(), model2):.2e}")


if __name__ == "__main__":
    main()
