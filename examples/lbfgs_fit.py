"""Fit a classifier with L-BFGS in jaxsched and in torch, side by side.

Run:  python examples/lbfgs_fit.py [--steps 20] [--line-search] [--max-iter 5]

A logistic regression on quadratic features of 2-D points (two noisy rings, 200 points), full
batch, in float64, from the same start.  torch calls its closure from Python up to
``max_iter`` (+25% for the line search) times per step; jaxsched's ``opt.step(loss_fn, x, y)``
runs the same iterations in one compiled program and returns the same loss.  Printed per
step: both losses, the loss evaluations so far, the largest parameter difference, and the
same difference between torch and torch started one ulp away: L-BFGS amplifies rounding
(on a harder, non-convex fit torch's own runs part ways), and where torch's result depends on
the last bits, so does the comparison.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsched import optim

jax.config.update("jax_enable_x64", True)
DECAY = 1e-3  # a small L2 term


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--line-search", action="store_true")
    parser.add_argument("--max-iter", type=int, default=5)
    args = parser.parse_args()
    kwargs = dict(lr=1 if args.line_search else 0.5, max_iter=args.max_iter, history_size=10,
                  line_search_fn="strong_wolfe" if args.line_search else None)  # fmt: skip

    rng = np.random.default_rng(0)
    radius = np.where(rng.random(200) < 0.5, 1.0, 2.0)
    angle = rng.uniform(0, 2 * np.pi, 200)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    points += 0.3 * rng.normal(size=points.shape)
    x = np.concatenate([points, points**2, points[:, :1] * points[:, 1:]], 1)  # 5 features
    y = (radius > 1.5).astype(np.float64)
    start = {"b": np.zeros(1), "w": rng.normal(size=5) * 0.01}

    def loss_fn(p, x, y):  # jaxsched: the loss as a function of the parameters
        z = x @ p["w"] + p["b"][0]
        return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + DECAY * jnp.sum(p["w"] ** 2)

    opt = optim.LBFGS({k: jnp.asarray(v) for k, v in start.items()}, **kwargs)

    xt, yt = torch.tensor(x), torch.tensor(y)

    def torch_run(start):
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in sorted(start.items())}
        torch_opt = torch.optim.LBFGS(list(tensors.values()), **kwargs)

        def closure():  # torch: re-evaluates the model
            torch_opt.zero_grad()
            p = tensors
            z = xt @ p["w"] + p["b"][0]
            loss = torch.mean(torch.nn.functional.softplus(z) - yt * z) + DECAY * torch.sum(
                p["w"] ** 2
            )
            loss.backward()
            return loss

        return tensors, lambda: float(torch_opt.step(closure).detach())

    tensors, torch_step = torch_run(start)
    # torch again, from a start one ulp away: how much torch's own result depends on rounding
    nudged, nudged_step = torch_run({k: np.nextafter(v, np.inf) for k, v in start.items()})

    def gap(a, b):
        return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)

    print(f"LBFGS {kwargs}")
    for step in range(args.steps):
        loss = opt.step(loss_fn, x, y)
        torch_loss = torch_step()
        nudged_step()
        theirs = {k: t.detach().numpy() for k, t in tensors.items()}
        diff = gap(opt.params, theirs)
        own = gap({k: t.detach().numpy() for k, t in nudged.items()}, theirs)
        evals = opt.state_dict()["state"][0]["func_evals"]
        print(f"step {step:3d}  loss {float(loss):.10e}  torch {torch_loss:.10e}  "
              f"evals {evals:4d}  max|Δθ| {diff:.1e}  torch vs torch nudged {own:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
