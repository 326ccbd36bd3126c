"""torch's learning-rate recipes, ported line for line to jaxsched.

Run:  python examples/recipes.py [basic|keys|groups|step_vs_exp|manual|parity|all]

Each recipe keeps the torch shape (optimizer, ``scheduler.step()`` once per epoch after
``optimizer.step()``, hand-written ``group["lr"]``) with JAX doing the maths.  The data are
generated here (no downloads); every recipe runs in seconds on a CPU.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxsched import optim
from jaxsched.optim import lr_scheduler

KEY = jax.random.key(0)
X = jax.random.normal(KEY, (64, 5))
Y = X @ jnp.arange(1.0, 6.0)[:, None] * 0.3


def init_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "features": {"w": jnp.asarray(rng.normal(size=(5, 8)) * 0.3, jnp.float32)},
        "classifier": {"w": jnp.asarray(rng.normal(size=(8, 1)) * 0.3, jnp.float32)},
    }


def loss_fn(params, x, y):
    hidden = jnp.tanh(x @ params["features"]["w"])
    return jnp.mean((hidden @ params["classifier"]["w"] - y) ** 2)


grad_fn = jax.jit(jax.value_and_grad(loss_fn))


def basic(epochs: int = 10) -> list[float]:
    """The basic loop: per batch clear grads (a no-op in JAX: gradients are returned by jax.grad,
    never accumulated), forward + backward, ``optimizer.step()``; ``scheduler.step()`` once per
    epoch, after the optimizer."""
    optimizer = optim.SGD(init_params(), lr=0.02, momentum=0.9)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)
    losses = []
    for epoch in range(epochs):
        for batch in range(4):
            xb, yb = X[batch * 16 : (batch + 1) * 16], Y[batch * 16 : (batch + 1) * 16]
            optimizer.zero_grad()
            loss, grads = grad_fn(optimizer.params, xb, yb)
            optimizer.step(grads)
        scheduler.step()
        losses.append(float(loss))
        print(f"epoch {epoch:2d}  lr {scheduler.get_last_lr()[0]:.5f}  loss {losses[-1]:.5f}")
    return losses


def keys() -> None:
    """``param_groups`` keys for SGD and Adam, before and after a scheduler adds ``initial_lr``."""
    for cls in (optim.SGD, optim.Adam):
        optimizer = cls(init_params(), lr=0.01)
        print(f"{cls.__name__:4s} before: {list(optimizer.param_groups[0])}")
        lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
        print(f"{cls.__name__:4s} after:  {list(optimizer.param_groups[0])}")


def groups(epochs: int = 6) -> None:
    """Two groups with different learning rates: ``features`` at the base lr, ``classifier`` at
    1e-3 (a flax version of the same: ``examples/flax_param_groups.py``)."""
    p = init_params()
    optimizer = optim.SGD(
        [{"params": {"features": p["features"]}}, {"params": {"classifier": p["classifier"]},
                                                   "lr": 1e-3}],
        lr=1e-2, momentum=0.9,
    )  # fmt: skip
    scheduler = lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    for epoch in range(epochs):
        _, grads = grad_fn(optimizer.params, X, Y)
        optimizer.step(grads)
        scheduler.step()
        print(f"epoch {epoch}  lrs {[f'{lr:.0e}' for lr in scheduler.get_last_lr()]}")


def step_vs_exp(epochs: int = 12) -> None:
    """StepLR and ExponentialLR, the lr per epoch side by side."""
    a, b = optim.SGD(init_params(), lr=0.1), optim.SGD(init_params(), lr=0.1)
    step, exp = lr_scheduler.StepLR(a, 3, 0.5), lr_scheduler.ExponentialLR(b, 0.8)
    print("epoch  StepLR(3, 0.5)  ExponentialLR(0.8)")
    for epoch in range(epochs):
        print(f"{epoch:5d}  {step.get_last_lr()[0]:14.6f}  {exp.get_last_lr()[0]:18.6f}")
        for optimizer, scheduler in ((a, step), (b, exp)):
            _, grads = grad_fn(optimizer.params, X, Y)
            optimizer.step(grads)
            scheduler.step()


def manual(epochs: int = 60) -> list[float]:
    """Adjusting the lr by hand: ``lr * 0.1 ** (epoch // 20)`` written into every group."""
    base_lr = 0.05
    optimizer = optim.SGD(init_params(), lr=base_lr, momentum=0.9)
    seen = []
    for epoch in range(epochs):
        lr = base_lr * 0.1 ** (epoch // 20)
        for group in optimizer.param_groups:
            group["lr"] = lr
        _, grads = grad_fn(optimizer.params, X, Y)
        optimizer.step(grads)
        seen.append(optimizer.param_groups[0]["lr"])
        if epoch % 20 == 0:
            print(f"epoch {epoch:2d}  lr {lr:g}")
    return seen


def parity(epochs: int = 30) -> float:
    """The basic recipe (two groups, SGD + momentum, StepLR) in torch and in jaxsched, float64,
    on the same data; returns and prints the largest parameter difference."""
    import torch

    jax.config.update("jax_enable_x64", True)
    try:
        p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), init_params())
        x, y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
        ours = optim.SGD([{"params": {"features": p["features"]}},
                          {"params": {"classifier": p["classifier"]}, "lr": 1e-2}],
                         lr=0.05, momentum=0.9, weight_decay=1e-4)  # fmt: skip
        ours_sched = lr_scheduler.StepLR(ours, 10, 0.5)
        tw = {k: torch.tensor(np.asarray(v["w"]), requires_grad=True) for k, v in p.items()}
        theirs = torch.optim.SGD([{"params": [tw["features"]]},
                                  {"params": [tw["classifier"]], "lr": 1e-2}],
                                 lr=0.05, momentum=0.9, weight_decay=1e-4)  # fmt: skip
        theirs_sched = torch.optim.lr_scheduler.StepLR(theirs, 10, 0.5)
        xt, yt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y))
        step = jax.jit(jax.value_and_grad(loss_fn))
        for _ in range(epochs):
            _, grads = step(ours.params, x, y)
            ours.step(grads)
            ours_sched.step()
            theirs.zero_grad()
            loss = ((torch.tanh(xt @ tw["features"]) @ tw["classifier"] - yt) ** 2).mean()
            loss.backward()
            theirs.step()
            theirs_sched.step()
        assert ours_sched.get_last_lr() == theirs_sched.get_last_lr()
        diff = max(
            float(np.max(np.abs(np.asarray(ours.params[k]["w"]) - tw[k].detach().numpy())))
            for k in tw
        )
        print(f"max |parameter difference| torch vs jaxsched after {epochs} epochs: {diff:.3e}")
        return diff
    finally:
        jax.config.update("jax_enable_x64", False)


RECIPES = {
    "basic": basic,
    "keys": keys,
    "groups": groups,
    "step_vs_exp": step_vs_exp,
    "manual": manual,
    "parity": parity,
}

if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "all"
    for name, recipe in RECIPES.items():
        if chosen in (name, "all"):
            print(f"--- {name}: {recipe.__doc__.splitlines()[0]}")
            recipe()
