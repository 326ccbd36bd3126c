"""What a scheduler stepped every batch adds to a small model's training step.

Run:  python benchmarks/scheduler_overhead.py [--steps 300]

A small MLP (2 layers, ~10k params) is trained with ``jaxsched.optim.SGD(momentum=0.9)``; each
step is ``jax.value_and_grad`` (jitted) + ``opt.step``.  Variants, timed in interleaved rounds:
no scheduler; ``OneCycleLR`` stepped every batch; ``CosineAnnealingLR`` stepped every batch.
Prints the median ms/step and the ratio to the no-scheduler loop (target: <= 1.10x), and checks
under ``jax.transfer_guard("disallow")`` that ``scheduler.step()`` moves nothing to or from the
device.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsched import optim
from jaxsched.optim import lr_scheduler

SIZES = {  # (inputs, hidden, outputs, batch)
    "micro MLP 64-128-10, batch 32": (64, 128, 10, 32),
    "MNIST-sized MLP 784-256-10, batch 128": (784, 256, 10, 128),
}


def setup(kind: str, total: int, size: tuple[int, int, int, int]):
    rng = np.random.default_rng(0)
    n_in, n_hidden, n_out, batch = size
    params = {
        "w1": jnp.asarray(rng.normal(size=(n_in, n_hidden)) * 0.05, jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(n_hidden, n_out)) * 0.05, jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(batch, n_in)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(batch, n_out)), jnp.float32)
    opt = optim.SGD(params, lr=0.01, momentum=0.9)
    sched = None
    if kind == "OneCycleLR":
        sched = lr_scheduler.OneCycleLR(opt, 0.05, total_steps=total)
    elif kind == "CosineAnnealingLR":
        sched = lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    grad = jax.jit(
        jax.value_and_grad(lambda p: jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2))
    )

    def step():
        _, g = grad(opt.params)
        opt.step(g)
        if sched is not None:
            sched.step()

    return step, opt, sched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    kinds = ("none", "OneCycleLR", "CosineAnnealingLR")
    rounds = 7
    total = rounds * args.steps + 10
    for label, size in SIZES.items():
        runs = {k: setup(k, total, size) for k in kinds}
        for step, opt, _ in runs.values():
            for _ in range(3):
                step()
            jax.block_until_ready(opt.params)
        samples = {k: [] for k in kinds}
        for _ in range(rounds):
            for k, (step, opt, _) in runs.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                jax.block_until_ready(opt.params)
                samples[k].append((time.perf_counter() - start) / args.steps * 1e3)
        base = statistics.median(samples["none"])
        print(f"{label}, SGD(momentum=0.9), grad + step: median ms/step")
        for k in kinds:
            ms = statistics.median(samples[k])
            print(f"  {k:18s} {ms:8.4f} ms   {ms / base:5.2f}x no scheduler")
    sched = runs["OneCycleLR"][2]
    with jax.transfer_guard("disallow"):
        sched.step()
    print("scheduler.step() under jax.transfer_guard('disallow'): no device transfer")


if __name__ == "__main__":
    main()
