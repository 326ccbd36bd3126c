"""Sharded step time and per-device memory on 8 XLA host devices: jaxsched.optim vs optax.

Run:  python benchmarks/sharded_step.py [--rounds 6] [--steps 20]

The script sets ``--xla_force_host_platform_device_count=8`` itself (before jax starts).  A
tree of 8.4M float32 parameters (16 leaves of 512 x 1024 plus 16 biases) is placed three ways:

- ``fsdp``: every leaf split over a 1-D mesh of 8 (``P("d")``), the biases too;
- ``2d``: a (2, 4) mesh, matrices ``P("x", "y")``, biases ``P("y")``;
- ``dp``: every leaf replicated on the 8 devices.

For SGD(momentum=0.9), Adam and AdamW it times, in interleaved rounds (medians of ``--steps``
steps per round, then the median over rounds):

- ``opt.step``: ``jaxsched.optim.X`` (the CPU kernels on each device's shards);
- ``opt.step xla``: the same with ``fused=False`` (the transform under XLA);
- ``optax``: ``optax.sgd/adam/adamw`` jitted with the same shardings, params and state donated;

and prints the ratio of each to optax, the collectives in each compiled step, and the
per-device bytes of the compiled step's arguments and temporaries (XLA's memory analysis:
params, state, gradients, and scratch). All variants live in one process: the tree has few
leaves, so dispatch cost is not what is measured.  The 8 "devices" share the machine's cores,
so absolute times say little; the ratios compare equal work on equal layouts.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jaxsched import optim

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
KINDS = {
    "sgd": (optim.SGD, dict(lr=1e-3, momentum=0.9), lambda: optax.sgd(1e-3, momentum=0.9)),
    "adam": (optim.Adam, dict(lr=1e-3), lambda: optax.adam(1e-3)),
    "adamw": (optim.AdamW, dict(lr=1e-3), lambda: optax.adamw(1e-3, weight_decay=1e-2)),
}


def layouts() -> dict[str, tuple[P, P, jax.sharding.Mesh]]:
    one = jax.make_mesh((8,), ("d",))
    two = jax.make_mesh((2, 4), ("x", "y"))
    return {
        "fsdp": (P("d"), P("d"), one),
        "2d": (P("x", "y"), P("y"), two),
        "dp": (P(), P(), one),
    }


def tree(layout: str, seed: int = 0) -> dict:
    matrix, bias, mesh = layouts()[layout]
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(16):
        out[f"layer{i:02d}"] = {
            "w": jax.device_put(
                rng.standard_normal((512, 1024), np.float32), NamedSharding(mesh, matrix)
            ),
            "b": jax.device_put(rng.standard_normal(1024).astype(np.float32),
                                NamedSharding(mesh, bias)),
        }  # fmt: skip
    return out


def collectives(compiled) -> int:
    return sum(any(c in line for c in COLLECTIVES) for line in compiled.as_text().splitlines())


def per_device_mb(compiled) -> float:
    stats = compiled.memory_analysis()
    return (stats.argument_size_in_bytes + stats.temp_size_in_bytes) / 2**20


def variants(layout: str, kind: str) -> dict:
    """name -> (step, block, compiled step)."""
    cls, kwargs, make_tx = KINDS[kind]
    grads = tree(layout, seed=1)
    out = {}
    for name, extra in (("opt.step", {}), ("opt.step xla", {"fused": False})):
        opt = cls(tree(layout), **kwargs, **extra)
        compiled = opt.lower_step(grads).compile()
        out[name] = (
            lambda opt=opt: opt.step(grads),
            lambda opt=opt: jax.block_until_ready(jax.tree.leaves(opt.params)[0]),
            compiled,
        )
    tx = make_tx()
    params = tree(layout)
    holder = {"params": params, "state": tx.init(params)}

    def update(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    jitted = jax.jit(update, donate_argnums=(0, 1))

    def step():
        holder["params"], holder["state"] = jitted(holder["params"], holder["state"], grads)

    compiled = jitted.lower(holder["params"], holder["state"], grads).compile()
    out["optax"] = (step, lambda: jax.block_until_ready(jax.tree.leaves(holder["params"])[0]),
                    compiled)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--layouts", default="fsdp,2d,dp")
    parser.add_argument("--kinds", default="sgd,adam,adamw")
    args = parser.parse_args()
    print(f"{jax.device_count()} devices ({jax.devices()[0].platform}), {os.cpu_count()} cores")
    print("| layout | optimizer | variant | ms/step | vs optax | collectives | MB/device |")
    print("|---|---|---|---|---|---|---|")
    for layout in args.layouts.split(","):
        for kind in args.kinds.split(","):
            found = variants(layout, kind)
            for step, block, _ in found.values():
                step()
                step()
                block()
            rounds: dict[str, list[float]] = {name: [] for name in found}
            for _ in range(args.rounds):
                for name, (step, block, _) in found.items():
                    times = []
                    for _ in range(args.steps):
                        start = time.perf_counter()
                        step()
                        block()
                        times.append(time.perf_counter() - start)
                    rounds[name].append(statistics.median(times))
            base = statistics.median(rounds["optax"])
            for name, (_, _, compiled) in found.items():
                ms = statistics.median(rounds[name]) * 1e3
                print(
                    f"| {layout} | {kind} | {name} | {ms:.2f} | {ms / 1e3 / base:.2f}x | "
                    f"{collectives(compiled)} | {per_device_mb(compiled):.1f} |",
                    flush=True,
                )
            del found
            jnp.zeros(()).block_until_ready()


if __name__ == "__main__":
    main()
