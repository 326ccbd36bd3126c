"""A torch recipe (SGD + Nesterov momentum + weight decay, StepLR every epoch) as a pure optax
pipeline, trained next to the same recipe in torch on the same data and initial weights.

Run:  python examples/optimizer_vs_torch.py [--epochs 30]

The JAX side is one jitted train step: ``jaxsched.sgd`` takes torch's arguments and its ``lr``
is ``jaxsched.schedules.step_lr`` counted in optimizer steps (``steps_per_epoch``), so nothing
is stepped by hand.  Prints the loss per epoch from both frameworks and the largest parameter
difference (float64 on both sides, so the two should agree to ~1e-12).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsched
import jaxsched.schedules as S

jax.config.update("jax_enable_x64", True)  # an example script, not a library: float64 parity

BATCHES, BATCH = 8, 16


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCHES * BATCH, 6))
    y = np.tanh(x @ rng.normal(size=(6, 1))) + 0.05 * rng.normal(size=(BATCHES * BATCH, 1))
    params = {
        "w1": rng.normal(size=(6, 16)) * 0.4,
        "b1": np.zeros(16),
        "w2": rng.normal(size=(16, 1)) * 0.4,
        "b2": np.zeros(1),
    }
    return x, y, params


def run_jax(x, y, init, epochs):
    schedule = S.step_lr(0.05, step_size=10, gamma=0.5, steps_per_epoch=BATCHES)
    tx = jaxsched.sgd(lr=schedule, momentum=0.9, nesterov=True, weight_decay=1e-4)
    params = jax.tree.map(jnp.asarray, init)
    state = tx.init(params)

    def loss_fn(p, xb, yb):
        return jnp.mean((jnp.tanh(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"] - yb) ** 2)

    @jax.jit
    def train_step(p, state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, state = tx.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    losses = []
    for _ in range(epochs):
        total = 0.0
        for b in range(BATCHES):
            sl = slice(b * BATCH, (b + 1) * BATCH)
            params, state, loss = train_step(params, state, x[sl], y[sl])
            total += float(loss)
        losses.append(total / BATCHES)
    return losses, params


def run_torch(x, y, init, epochs):
    import torch

    p = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    opt = torch.optim.SGD(p.values(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    xt, yt = torch.tensor(x), torch.tensor(y)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for b in range(BATCHES):
            xb, yb = xt[b * BATCH : (b + 1) * BATCH], yt[b * BATCH : (b + 1) * BATCH]
            opt.zero_grad()
            loss = ((torch.tanh(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"] - yb) ** 2).mean()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        sched.step()
        losses.append(total / BATCHES)
    return losses, {k: v.detach().numpy() for k, v in p.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    x, y, init = data()
    ours, params = run_jax(x, y, init, args.epochs)
    try:
        theirs, ref = run_torch(x, y, init, args.epochs)
    except ImportError:
        theirs, ref = None, None
    for epoch, loss in enumerate(ours):
        line = f"epoch {epoch:3d}  jaxsched loss {loss:.10f}"
        if theirs is not None:
            line += f"   torch loss {theirs[epoch]:.10f}"
        print(line)
    if ref is not None:
        diff = max(float(np.max(np.abs(np.asarray(params[k]) - ref[k]))) for k in ref)
        print(f"max |parameter difference| after {args.epochs} epochs: {diff:.3e}")


if __name__ == "__main__":
    main()
