"""The main demo: a torch training recipe run in JAX with jaxsched, next to torch itself.

Run:  python examples/train.py [--epochs 20]

A small flax model learns a generated regression task with ``optim.SGD(momentum=0.9)``, two
parameter groups (the hidden layer at the base lr, the head at a tenth of it) and ``StepLR``
stepped once per epoch, exactly as the torch recipe writes it.  A progress bar shows the
batches; each epoch prints the learning rates and the loss.  With torch installed, the same
recipe is trained in torch from the same initial weights and the largest parameter difference
is printed (float64 on both sides, so it is at rounding level).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxsched import optim
from jaxsched.optim import lr_scheduler

jax.config.update("jax_enable_x64", True)  # a script, not a library: float64 for parity

BATCHES, BATCH = 16, 32


class Regressor(nn.Module):
    @nn.compact
    def __call__(self, x):
        hidden = nn.tanh(nn.Dense(32, param_dtype=jnp.float64, name="hidden")(x))
        return nn.Dense(1, param_dtype=jnp.float64, name="head")(hidden)


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCHES * BATCH, 8))
    y = np.sin(x @ rng.normal(size=(8, 1))) + 0.1 * rng.normal(size=(BATCHES * BATCH, 1))
    return x, y


def progress(iterable, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, leave=False, ncols=80)
    except ImportError:
        return iterable


def train_jax(params, x, y, epochs: int):
    model = Regressor()
    groups = [
        {"params": {"hidden": params["hidden"]}},
        {"params": {"head": params["head"]}, "lr": 0.01},
    ]
    optimizer = optim.SGD(groups, lr=0.1, momentum=0.9)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)

    @jax.jit
    def loss_and_grads(p, xb, yb):
        return jax.value_and_grad(lambda p: jnp.mean((model.apply({"params": p}, xb) - yb) ** 2))(p)

    history = []
    for epoch in range(epochs):
        total = 0.0
        for b in progress(range(BATCHES), f"epoch {epoch}"):
            xb, yb = x[b * BATCH : (b + 1) * BATCH], y[b * BATCH : (b + 1) * BATCH]
            optimizer.zero_grad()  # kept from the torch recipe; gradients are values in JAX
            loss, grads = loss_and_grads(optimizer.params, xb, yb)
            optimizer.step(grads)
            total += float(loss)
        lrs = scheduler.get_last_lr()
        scheduler.step()
        history.append(total / BATCHES)
        print(f"epoch {epoch:3d}  lr {lrs[0]:.4g} / {lrs[1]:.4g}  loss {history[-1]:.6f}")
    return optimizer.params, history


def train_torch(params, x, y, epochs: int):
    import torch

    w = {f"{layer}.{name}": torch.tensor(np.asarray(v), requires_grad=True)
         for layer, leaves in params.items() for name, v in leaves.items()}  # fmt: skip
    optimizer = torch.optim.SGD(
        [{"params": [w["hidden.kernel"], w["hidden.bias"]]},
         {"params": [w["head.kernel"], w["head.bias"]], "lr": 0.01}],
        lr=0.1, momentum=0.9,
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        for b in range(BATCHES):
            xb, yb = xt[b * BATCH : (b + 1) * BATCH], yt[b * BATCH : (b + 1) * BATCH]
            optimizer.zero_grad()
            hidden = torch.tanh(xb @ w["hidden.kernel"] + w["hidden.bias"])
            loss = ((hidden @ w["head.kernel"] + w["head.bias"] - yb) ** 2).mean()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return {k: v.detach().numpy() for k, v in w.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    x, y = make_data()
    params = Regressor().init(jax.random.key(0), jnp.asarray(x[:1]))["params"]
    trained, _ = train_jax(params, x, y, args.epochs)
    try:
        reference = train_torch(params, x, y, args.epochs)
    except ImportError:
        print("(install torch==2.13.0 to train the same recipe in torch and compare)")
        return
    diff = max(
        float(np.max(np.abs(np.asarray(trained[layer][name]) - reference[f"{layer}.{name}"])))
        for layer in trained
        for name in trained[layer]
    )
    print(f"torch trained the same recipe: max |parameter difference| = {diff:.3e}")


if __name__ == "__main__":
    main()
