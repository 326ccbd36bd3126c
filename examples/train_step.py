"""One jitted program per training step: ``opt.make_train_step(loss_fn)``.

Run:  python examples/train_step.py [--steps 200] [--layers 40]

A flax MLP with many small layers (the case where dispatching every parameter leaf costs as
much as the update) learns a generated regression task with ``optim.AdamW``, two parameter
groups and ``CosineAnnealingLR``, twice from the same weights:

- the torch-shaped loop: ``loss, grads = value_and_grad(params, x, y)`` then ``opt.step(grads)``
  (two jitted calls; every parameter leaf crosses the call boundary four times);
- ``train_step = opt.make_train_step(loss_fn)``: loss, gradients and update in one program.

It prints the losses of both (the same numbers, up to float rounding) and the median time per
step of each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxsched import optim
from jaxsched.optim import lr_scheduler


class DeepMLP(nn.Module):
    layers: int

    @nn.compact
    def __call__(self, x):
        for i in range(self.layers):
            x = x + 0.1 * nn.tanh(nn.Dense(16, name=f"block{i}")(x))
        return nn.Dense(1, name="head")(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--layers", type=int, default=40)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 16)), jnp.float32)
    y = jnp.asarray(np.sin(np.asarray(x) @ rng.normal(size=(16, 1))), jnp.float32)
    model = DeepMLP(args.layers)
    params = model.init(jax.random.key(0), x)["params"]

    def loss_fn(params, x, y):
        return jnp.mean((model.apply({"params": params}, x) - y) ** 2)

    def make_optimizer():
        blocks = {k: v for k, v in params.items() if k != "head"}
        groups = [{"params": blocks}, {"params": {"head": params["head"]}, "lr": 3e-3}]
        opt = optim.AdamW(groups, lr=1e-2, weight_decay=1e-4)
        return opt, lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    loop_opt, loop_sched = make_optimizer()
    fused_opt, fused_sched = make_optimizer()
    train_step = fused_opt.make_train_step(loss_fn)

    times: dict[str, list[float]] = {"value_and_grad + opt.step": [], "make_train_step": []}
    for step in range(args.steps):
        start = time.perf_counter()
        loop_loss, grads = value_and_grad(loop_opt.params, x, y)
        loop_opt.step(grads)
        loop_sched.step()
        jax.block_until_ready(loop_opt.params)
        times["value_and_grad + opt.step"].append(time.perf_counter() - start)

        start = time.perf_counter()
        fused_loss = train_step(x, y)
        fused_sched.step()
        jax.block_until_ready(fused_opt.params)
        times["make_train_step"].append(time.perf_counter() - start)
        if step % max(1, args.steps // 8) == 0 or step == args.steps - 1:
            print(
                f"step {step:4d}  lr {fused_sched.get_last_lr()[0]:.2e}  "
                f"loss {float(fused_loss):.6e} (two calls: {float(loop_loss):.6e})"
            )
    leaves = zip(jax.tree.leaves(loop_opt.params), jax.tree.leaves(fused_opt.params), strict=True)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in leaves)
    n_leaves = len(jax.tree.leaves(params))
    print(f"{n_leaves} parameter leaves; largest parameter difference between the two: {diff:.2e}")
    for name, samples in times.items():  # skip the first steps: compiles
        print(f"median ms/step {name}: {1e3 * statistics.median(samples[2:]):.3f}")


if __name__ == "__main__":
    main()
