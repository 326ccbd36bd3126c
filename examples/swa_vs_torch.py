"""Stochastic Weight Averaging ported from torch's swa_utils recipe, next to torch (float64).

Run:  python examples/swa_vs_torch.py [--epochs 10 --swa-start 5]

A small network with BatchNorm trains with SGD + momentum under CosineAnnealingLR; from epoch
``--swa-start`` on, ``AveragedModel`` averages the weights once per epoch and ``SWALR`` anneals
the lr to ``swa_lr``; at the end ``update_bn`` recomputes the BatchNorm statistics of the
averaged weights over the data.  torch runs the same recipe from the same weights (copied with
``jaxsched.interop``); per epoch both lrs are printed, at the end the largest relative
differences of the averaged weights and of the recomputed statistics.
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import linen as nn  # noqa: E402

from jaxsched import interop, optim  # noqa: E402
from jaxsched.optim import lr_scheduler, swa_utils  # noqa: E402


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn, self.fc2 = (
            torch.nn.Linear(4, 16),
            torch.nn.BatchNorm1d(16),
            torch.nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


class FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(
            nn.Dense(16, name="fc1")(x)
        )
        return nn.Dense(1, name="fc2")(nn.relu(x))


def data(batches: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4, 1))
    out = []
    for _ in range(batches):
        x = rng.normal(size=(16, 4))
        out.append((x, np.sin(x @ w) + 0.1 * rng.normal(size=(16, 1))))
    return out


def relative(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--swa-start", type=int, default=5)
    args = parser.parse_args()
    loader = data(4)

    torch.manual_seed(0)
    model = TorchNet().double()
    module = FlaxNet()
    variables = module.init(jax.random.key(0), jnp.ones((2, 4)))
    variables = interop.torch_to_flax(
        model, jax.tree.map(lambda a: a.astype(jnp.float64), variables)
    )

    # torch's recipe
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    swa_model = torch.optim.swa_utils.AveragedModel(model)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    swa_sched = torch.optim.swa_utils.SWALR(opt, swa_lr=0.02, anneal_epochs=2)

    # the same in jaxsched
    jopt = optim.SGD(variables["params"], lr=0.1, momentum=0.9)
    jswa = swa_utils.AveragedModel(variables)
    jsched = lr_scheduler.CosineAnnealingLR(jopt, T_max=args.epochs)
    jswa_sched = swa_utils.SWALR(jopt, swa_lr=0.02, anneal_epochs=2)
    batch_stats = variables["batch_stats"]

    @jax.jit
    def grads_of(params, batch_stats, x, y):
        def loss(params):
            out, updates = module.apply(
                {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
            )
            return jnp.mean((out - y) ** 2), updates["batch_stats"]

        return jax.grad(loss, has_aux=True)(params)

    print("epoch  lr torch    lr jaxsched")
    for epoch in range(args.epochs):
        for x, y in loader:
            loss = torch.nn.functional.mse_loss(model(torch.tensor(x)), torch.tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            grads, batch_stats = grads_of(jopt.params, batch_stats, x, y)
            jopt.step(grads)
        if epoch >= args.swa_start:
            swa_model.update_parameters(model)
            swa_sched.step()
            jswa.update_parameters({"params": jopt.params, "batch_stats": batch_stats})
            jswa_sched.step()
        else:
            sched.step()
            jsched.step()
        print(f"{epoch:5d}  {opt.param_groups[0]['lr']:.8f}  {jopt.param_groups[0]['lr']:.8f}")

    torch.optim.swa_utils.update_bn([(torch.tensor(x), y) for x, y in loader], swa_model)
    averaged = swa_utils.update_bn(
        [(jnp.asarray(x), y) for x, y in loader], module, jswa.module, train=True
    )
    ours = interop.flax_to_torch(averaged, names=swa_model.module)
    theirs = swa_model.module.state_dict()
    weights = max(relative(ours[n], theirs[n]) for n, _ in swa_model.module.named_parameters())
    stats = max(relative(ours[n], theirs[n]) for n in ("bn.running_mean", "bn.running_var"))
    print(f"averaged {int(jswa.n_averaged)} times (torch {int(swa_model.n_averaged)})")
    print(f"max relative difference: SWA weights {weights:.2e}, BatchNorm statistics {stats:.2e}")


if __name__ == "__main__":
    main()
