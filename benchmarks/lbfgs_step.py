"""LBFGS: time per outer step, jaxsched.optim.LBFGS against torch.optim.LBFGS, side by side.

Run:  python benchmarks/lbfgs_step.py [--repeats 7]

Problems: logistic regression (4096 x 64 features; it converges within a few iterations per
step) and two MLPs (1024 x 32 -> 64 -> 10, 4096 x 128 -> 512 -> 10),
float32, ``max_iter=20`` (torch's default), ``history_size=10``, tolerances near 0 (so that
every step runs its 20 iterations rather than stopping once converged), with the fixed step
and with the strong-Wolfe line search.  Each outer step re-evaluates the loss up to 20-25
times: torch calls the closure from Python each time, jaxsched runs the whole step as one
compiled program.
Both start from the same point and run the same number of steps; the figure is the median
time per step over ``--repeats`` runs of ``--steps`` steps (after one warm-up run), and the
ratio torch / jaxsched (> 1: jaxsched is faster).  Loss evaluations per step are printed for
both, so that a ratio is never the result of one side stopping early.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsched import optim


def problems():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4096, 64)).astype(np.float32), (rng.random(4096) < 0.5)
    y = y.astype(np.float32)

    def logistic_loss(softplus, mean):
        return lambda p, X, y: mean(softplus(X @ p["w"] + p["b"][0]) - y * (X @ p["w"] + p["b"][0]))

    def mlp_loss(tanh, mean):
        return lambda p, X, y: mean((tanh(X @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"] - y) ** 2)

    logistic = (
        {"b": np.zeros(1, np.float32), "w": (rng.normal(size=64) * 0.01).astype(np.float32)},
        logistic_loss(lambda z: jnp.logaddexp(0.0, z), jnp.mean),
        logistic_loss(torch.nn.functional.softplus, torch.mean),
        (X, y),
    )  # fmt: skip
    init = lambda *s: (rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32)  # noqa: E731

    def mlp(n, d_in, hidden, d_out):
        params = {"b1": np.zeros(hidden, np.float32), "b2": np.zeros(d_out, np.float32),
                  "w1": init(d_in, hidden), "w2": init(hidden, d_out)}  # fmt: skip
        data = (
            rng.normal(size=(n, d_in)).astype(np.float32),
            rng.normal(size=(n, d_out)).astype(np.float32),
        )
        return params, mlp_loss(jnp.tanh, jnp.mean), mlp_loss(torch.tanh, torch.mean), data

    return {
        "logistic 4096x64": logistic,
        "mlp 32-64-10": mlp(1024, 32, 64, 10),
        "mlp 128-512-10": mlp(4096, 128, 512, 10),
    }


def run_torch(params, loss, data, kwargs, steps):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in sorted(params.items())}
    X, y = (torch.tensor(a) for a in data)
    opt = torch.optim.LBFGS(list(tensors.values()), **kwargs)

    def closure():
        opt.zero_grad()
        value = loss(tensors, X, y)
        value.backward()
        return value

    start = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
    elapsed = time.perf_counter() - start
    return elapsed / steps, opt.state_dict()["state"][0]["func_evals"] / steps


def run_ours(params, loss, data, kwargs, steps):
    """(A new optimizer with the same model, loss and settings reuses the compiled step.)"""
    opt = optim.LBFGS({k: jnp.asarray(v) for k, v in params.items()}, **kwargs)
    X, y = (jnp.asarray(a) for a in data)
    start = time.perf_counter()
    for _ in range(steps):
        opt.step(loss, X, y)
    jax.block_until_ready(opt.params)
    elapsed = time.perf_counter() - start
    evals = opt.state_dict()["state"][0]["func_evals"] / steps
    return elapsed / steps, evals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{'problem':<18} {'line search':<13} {'torch ms':>9} {'ours ms':>8} {'torch/ours':>10} "
          f"{'evals/step torch, ours':>24}")  # fmt: skip
    for name, (params, jax_loss, torch_loss, data) in problems().items():
        for search in (None, "strong_wolfe"):
            kwargs = dict(lr=1, max_iter=20, history_size=10, line_search_fn=search,
                          tolerance_grad=1e-12, tolerance_change=1e-15)  # fmt: skip
            run_ours(params, jax_loss, data, kwargs, args.steps)  # compiles
            run_torch(params, torch_loss, data, kwargs, 1)
            theirs, ours = [], []
            for _ in range(args.repeats):
                t, t_evals = run_torch(params, torch_loss, data, kwargs, args.steps)
                o, o_evals = run_ours(params, jax_loss, data, kwargs, args.steps)
                theirs.append(t)
                ours.append(o)
            t_ms, o_ms = 1e3 * np.median(theirs), 1e3 * np.median(ours)
            print(f"{name:<18} {search or 'none':<13} {t_ms:9.2f} {o_ms:8.2f} {t_ms / o_ms:10.2f} "
                  f"{t_evals:>15.1f}, {o_evals:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
