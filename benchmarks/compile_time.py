"""First-step time (trace + compile + one run) against the number of parameter leaves.

Run:  python benchmarks/compile_time.py [--sizes 500,1000,2000,5000] [--kind adam]

For each size, a tree of that many leaves of 10 float32 each; each measurement runs in a fresh
process (nothing cached):

- ``opt.step``: ``jaxsched.optim.Adam`` (or SGD/AdamW), build + first ``step``;
- ``opt.step xla``: the same with ``fused=False``;
- ``optax``: ``optax.adam`` (sgd/adamw) update + apply_updates jitted and donated, first call.

Prints seconds and the ratio to optax.  XLA compiles a custom call's operands in quadratic time,
so the kernel engine calls its kernel on groups of at most ``LEAVES_PER_CALL`` leaves.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import sys, time
import jax, jax.numpy as jnp, optax
from jaxsched import optim
n, variant, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
params = {f"p{i:05d}": jnp.ones((10,)) for i in range(n)}
grads = jax.tree.map(jnp.ones_like, params)
jax.block_until_ready((params, grads))
start = time.perf_counter()
if variant.startswith("opt.step"):
    cls = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}[kind]
    extra = {"fused": False} if variant.endswith("xla") else {}
    opt = cls(params, lr=1e-3, **extra)
    opt.step(grads)
    jax.block_until_ready(opt.params)
else:
    tx = {"sgd": lambda: optax.sgd(1e-3, momentum=0.9), "adam": lambda: optax.adam(1e-3),
          "adamw": lambda: optax.adamw(1e-3)}[kind]()
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s
    out = jax.jit(step, donate_argnums=(0, 1))(params, tx.init(params), grads)
    jax.block_until_ready(out)
print(time.perf_counter() - start)
"""


def measure(n: int, variant: str, kind: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), variant, kind],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,1000,2000,5000")
    parser.add_argument("--kind", default="adam", choices=["sgd", "adam", "adamw"])
    parser.add_argument("--variants", default="opt.step,opt.step xla,optax")
    args = parser.parse_args()
    variants = args.variants.split(",")
    print(f"first step, seconds ({args.kind}, leaves of 10 float32, a fresh process each)")
    print("| leaves | " + " | ".join(variants) + " | opt.step / optax |")
    print("|---|" + "---|" * (len(variants) + 1))
    for n in (int(x) for x in args.sizes.split(",")):
        times = {v: measure(n, v, args.kind) for v in variants}
        ratio = times["opt.step"] / times["optax"] if {"opt.step", "optax"} <= set(times) else 0
        cells = " | ".join(f"{times[v]:.2f}" for v in variants)
        print(f"| {n} | {cells} | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
