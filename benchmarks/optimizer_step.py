"""Step time and peak memory: jaxsched.optim vs raw jitted optax vs torch.optim, side by side.

Run:  python benchmarks/optimizer_step.py [--trees T,A,B,C] [--kinds sgd,adam,adamw] [--quick]
                                         [--train B,A]

Trees (as in the project's performance baselines): T tiny (3 leaves, 100 params), A
resnet50-like (161 leaves, 25.6M params), B many-small (1000 leaves, 1M params), C one-big
(1 leaf, 100M params); float32.  For SGD(momentum=0.9), Adam and AdamW it times, each in its
own process, in interleaved rounds:

- ``opt.step``: ``jaxsched.optim.SGD/Adam/AdamW`` (stateful, two param groups, lr written into
  ``param_groups`` before every step, as a scheduler would); ``opt.step no-w``: no writes;
  ``opt.step xla``: the same with ``fused=False`` (the transform under XLA, no CPU kernels);
- ``jaxsched tx``: the same torch-exact transform, jitted and donated by hand;
- ``optax``: ``optax.sgd/adam``, jitted and donated (the baseline a JAX user has);
  ``optax inject``: the same under ``inject_hyperparams`` with lr written every step;
- ``torch loop/foreach/fused``: ``torch.optim`` with each implementation.

and prints medians (ms) with ratios against torch fused and raw optax; on tree C also the
effective bandwidth (arrays touched x bytes / time) against the streaming bandwidth measured in
the same run (a donated jitted axpy and torch's in-place add_, best median); then the peak RSS
of ``opt.step``, raw optax and torch fused.

Each variant lives in its own worker process (``_workers``), as a training job would, and the
workers are timed in turn over six interleaved rounds.  In one process, the thousands of arrays
the other variants keep alive slow JAX's dispatch of tree B's 1000 leaves by half (glibc malloc
walks longer free lists per new array), a cost a real job does not pay; torch's fused step
creates no Python objects and does not see it.

``--train`` times whole train steps on a toy loss, ``1e-3 * sum over leaves of sum(p * x)``
(every parameter read once by the loss, every gradient written once; a squared loss was
dropped: XLA:CPU takes 5x longer for its value_and_grad than for the loss and the gradient
apart, whatever the optimizer): ``opt.make_train_step`` (loss, gradients and update in one
program), a jitted ``jax.value_and_grad`` then ``opt.step``, ``value_and_grad`` + ``optax`` in
one jitted program, and torch's forward / backward / fused step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jaxsched
from benchmarks._workers import serve, time_in_workers
from jaxsched import optim

TREES = {
    "T": [(10, 8), (8,), (12,)],
    "A": [(480, 1000)] * 53 + [(1500,)] * 108,
    "B": [(1000,)] * 1000,
    "C": [(100_000_000,)],
}
STEPS = {"T": 400, "A": 6, "B": 12, "C": 4}
ARRAYS = {"sgd": 5, "adam": 7, "adamw": 7}  # read + written per step, one pass each


def make(tree: str):
    rng = np.random.default_rng(0)
    shapes = TREES[tree]
    params = {f"p{i:04d}": rng.standard_normal(s, dtype=np.float32) for i, s in enumerate(shapes)}
    grads = {k: rng.standard_normal(v.shape, dtype=np.float32) * 1e-2 for k, v in params.items()}
    return params, grads


def jaxsched_optimizer(kind: str, params, **flags) -> optim.Optimizer:
    """``optim.SGD(momentum=0.9)`` / ``Adam`` / ``AdamW`` at lr 1e-3."""
    if kind == "sgd":
        return optim.SGD(params, lr=1e-3, momentum=0.9, **flags)
    return (optim.Adam if kind == "adam" else optim.AdamW)(params, lr=1e-3, **flags)


def optax_tx(kind: str) -> optax.GradientTransformation:
    """The raw optax counterpart (what a JAX user has without jaxsched)."""
    return {
        "sgd": lambda: optax.sgd(1e-3, momentum=0.9),
        "adam": lambda: optax.adam(1e-3),
        "adamw": lambda: optax.adamw(1e-3, weight_decay=1e-2),
    }[kind]()


def torch_optimizer(kind: str, tensors, **flags):
    """torch's ``SGD(momentum=0.9)`` / ``Adam`` / ``AdamW`` at lr 1e-3."""
    import torch

    if kind == "sgd":
        return torch.optim.SGD(tensors, lr=1e-3, momentum=0.9, **flags)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(tensors, lr=1e-3, **flags)


def wait(params: dict) -> None:
    """Wait until a step's new params are computed: the outputs of one XLA execution become
    ready together, so one leaf tells (``jax.block_until_ready`` on all of tree B's 1000 leaves
    costs 0.4 ms of Python that a training loop, which only feeds them to the next step, never
    spends; torch's step returns when done)."""
    next(iter(params.values())).block_until_ready()


def jax_variants(kind: str, params, grads, only: str | None = None):
    """name -> (step callable, block callable); each owns its params and state (``only``:
    build just that one)."""
    g = jax.tree.map(jnp.asarray, grads)
    out = {}

    def stateful(write_lr: bool, fused: bool | None = None):
        half = len(params) // 2 or 1
        keys = sorted(params)
        groups = (
            [
                {"params": {k: params[k] for k in keys[:half]}},
                {"params": {k: params[k] for k in keys[half:]}, "lr": 1e-4},
            ]
            if len(keys) > 1
            else [{"params": params}]
        )
        opt = jaxsched_optimizer(kind, groups, **({} if fused is None else {"fused": fused}))
        counter = [0]

        def step():
            counter[0] += 1
            if write_lr:
                opt.param_groups[0]["lr"] = 1e-3 / (1 + 1e-3 * counter[0])
            opt.step(g)

        return step, lambda: wait(opt.params)

    def raw(tx, write_lr=False):
        p = jax.tree.map(jnp.asarray, params)
        state = [p, tx.init(p)]
        counter = [0]

        def update(p, s, g):
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        update = jax.jit(update, donate_argnums=(0, 1))

        def step():
            if write_lr:  # optax's way to change lr: the inject_hyperparams state
                counter[0] += 1
                state[1].hyperparams["learning_rate"] = 1e-3 / (1 + 1e-3 * counter[0])
            state[0], state[1] = update(state[0], state[1], g)

        return step, lambda: wait(state[0])

    ours = {"sgd": lambda: jaxsched.sgd(1e-3, momentum=0.9), "adam": lambda: jaxsched.adam(1e-3),
            "adamw": lambda: jaxsched.adamw(1e-3)}[kind]  # fmt: skip
    inject = {
        "sgd": lambda: optax.inject_hyperparams(optax.sgd)(learning_rate=1e-3, momentum=0.9),
        "adam": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
        "adamw": lambda: optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3),
    }[kind]
    builders = {
        "opt.step": lambda: stateful(write_lr=True),
        "opt.step no-w": lambda: stateful(write_lr=False),
        "opt.step xla": lambda: stateful(write_lr=True, fused=False),
        "jaxsched tx": lambda: raw(ours()),
        "optax": lambda: raw(optax_tx(kind)),
        "optax inject": lambda: raw(inject(), write_lr=True),
    }
    for name, build in builders.items():
        if only is None or name == only:
            out[name] = build()
    return out


def torch_variants(kind: str, params, grads, only: str | None = None):
    import torch

    torch.set_num_threads(2)
    out = {}
    for impl in ("loop", "foreach", "fused"):
        if only is not None and only != f"torch {impl}":
            continue
        tensors = [torch.tensor(v, requires_grad=True) for v in params.values()]
        for t, gv in zip(tensors, grads.values(), strict=True):
            t.grad = torch.tensor(gv)
        flags = {"foreach": impl == "foreach", "fused": True if impl == "fused" else None}
        opt = torch_optimizer(kind, tensors, **flags)
        out[f"torch {impl}"] = (opt.step, lambda: None)
    return out


def train_variants(kind: str, params, only: str | None = None, x: float = 0.5):
    """name -> (step, block) for whole train steps on ``1e-3 * sum_leaves sum(p * x)``
    (``only``: build just that one)."""

    def loss(tree, x):
        return sum(jnp.sum(v * x) for v in tree.values()) * 1e-3

    xj = jnp.float32(x)

    def train_step():
        opt = jaxsched_optimizer(kind, params)
        train_step = opt.make_train_step(loss)
        return lambda: train_step(xj), lambda: wait(opt.params)

    def two_calls():
        opt = jaxsched_optimizer(kind, params)
        value_and_grad = jax.jit(jax.value_and_grad(loss))
        return (
            lambda: opt.step(value_and_grad(opt.params, xj)[1]),
            lambda: wait(opt.params),
        )

    def optax_one_jit():
        tx = optax_tx(kind)

        def optax_step(p, s, x):
            value, g = jax.value_and_grad(loss)(p, x)
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s, value

        optax_step = jax.jit(optax_step, donate_argnums=(0, 1))
        p = jax.tree.map(jnp.asarray, params)
        state = [p, tx.init(p)]

        def run():
            state[0], state[1], _ = optax_step(state[0], state[1], xj)

        return run, lambda: wait(state[0])

    def torch_train():
        import torch

        torch.set_num_threads(2)
        tensors = [torch.tensor(v, requires_grad=True) for v in params.values()]
        topt = torch_optimizer(kind, tensors, fused=True)

        def run():
            topt.zero_grad()
            (sum((t * x).sum() for t in tensors) * 1e-3).backward()
            topt.step()

        return run, lambda: None

    builders = {"train_step": train_step, "v&g+opt.step": two_calls,
                "optax 1 jit": optax_one_jit, "torch f/b/fused": torch_train}  # fmt: skip
    return {name: build() for name, build in builders.items() if only in (None, name)}


def build(mode: str, tree: str, kind: str, name: str):
    """A worker's variant (see ``_workers``): ``mode`` "step" or "train"."""
    params, grads = make(tree)
    if mode == "train":
        return train_variants(kind, params, only=name)[name]
    if name.startswith("torch"):
        return torch_variants(kind, params, grads, only=name)[name]
    return jax_variants(kind, params, grads, only=name)[name]


def streaming_bandwidth(n: int = 50_000_000, repeats: int = 10) -> float:
    """GB/s of the best median among in-place axpy kernels (3 arrays touched): a donated jitted
    ``x + s * y`` and torch's ``add_``."""
    import torch

    x, y = jnp.ones(n, jnp.float32), jnp.ones(n, jnp.float32)
    axpy = jax.jit(lambda x, y: x + 0.5 * y, donate_argnums=0)
    tx, ty = torch.ones(n), torch.ones(n)
    times: dict[str, list[float]] = {"jax": [], "torch": []}
    x = axpy(x, y).block_until_ready()
    for _ in range(repeats):
        start = time.perf_counter()
        x = axpy(x, y).block_until_ready()
        times["jax"].append(time.perf_counter() - start)
        start = time.perf_counter()
        tx.add_(ty, alpha=0.5)
        times["torch"].append(time.perf_counter() - start)
    return max(3 * n * 4 / statistics.median(v) / 1e9 for v in times.values())


JAX_NAMES = ["opt.step", "opt.step no-w", "opt.step xla", "jaxsched tx", "optax", "optax inject"]
TORCH_NAMES = ["torch loop", "torch foreach", "torch fused"]
TRAIN_NAMES = ["train_step", "v&g+opt.step", "optax 1 jit", "torch f/b/fused"]
BIG_NAMES = ["opt.step", "opt.step xla", "optax", "torch fused"]  # tree C: keep its run short


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", default="T,A,B,C")
    parser.add_argument("--kinds", default="sgd,adam,adamw")
    parser.add_argument("--quick", action="store_true", help="a third of the steps")
    parser.add_argument("--train", default="B,A", help="trees for whole train steps ('' skips)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(build(*args.worker))
        return
    print(f"jax {jax.__version__}, optax {optax.__version__}, devices {jax.devices()}")
    summary, memory = [], []
    for tree in args.trees.split(","):
        leaves, n = len(TREES[tree]), sum(int(np.prod(s)) for s in TREES[tree])
        steps = max(3, STEPS[tree] // (3 if args.quick else 1))
        big = tree == "C"
        bandwidth = streaming_bandwidth() if big else None
        for kind in args.kinds.split(","):
            names = BIG_NAMES if big else JAX_NAMES + TORCH_NAMES
            medians, peaks = time_in_workers(__file__, ["step", tree, kind], names, steps)
            base, fused = medians["optax"], medians["torch fused"]
            print(f"\ntree {tree} ({leaves} leaves, {n:,} params), {kind}: median ms/step")
            for name, ms in medians.items():
                line = f"  {name:14s} {ms:9.4f}   {ms / fused:5.2f}x torch fused"
                line += f"  {ms / base:5.2f}x optax"
                if bandwidth is not None:
                    gbs = ARRAYS[kind] * n * 4 / (ms / 1e3) / 1e9
                    line += f"  {gbs:5.1f} GB/s = {100 * gbs / bandwidth:4.0f}% of {bandwidth:.1f}"
                print(line, flush=True)
            ratios = (medians["opt.step"] / fused, medians["opt.step xla"] / fused)
            summary.append((tree, kind, *ratios))
            memory.append((tree, kind, peaks))
    print("\nopt.step / torch fused (lr written every step); fused=False (XLA path) in brackets")
    for tree, kind, ratio, xla in summary:
        print(f"  tree {tree} {kind:5s} {ratio:5.2f}x   ({xla:5.2f}x)")
    print("\npeak RSS (MB, each variant's process): opt.step / optax / torch fused")
    for tree, kind, peaks in memory:
        cells = " / ".join(f"{peaks[v]:6.0f}" for v in ("opt.step", "optax", "torch fused"))
        print(f"  tree {tree} {kind:5s} {cells}")
    for tree in filter(None, args.train.split(",")):
        steps = max(3, STEPS[tree] // (3 if args.quick else 1))
        print(f"\ntrain step, tree {tree}: median ms/step (ratio to torch forward/backward/fused)")
        for kind in args.kinds.split(","):
            medians, _ = time_in_workers(__file__, ["train", tree, kind], TRAIN_NAMES, steps)
            cells = [f"{n} {ms:.3f} ({ms / medians['torch f/b/fused']:.2f}x)"
                     for n, ms in medians.items()]  # fmt: skip
            print(f"  {kind:5s} " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
