"""A modern training loop ported from torch, next to torch: decay groups by rule, warmup +
cosine (Hugging Face's lambda), gradient accumulation, gradient clipping and an EMA of the
weights (torchvision's reference), in float64.

Run:  python examples/training_loop_vs_torch.py [--steps 30] [--accumulation 4]

jaxsched runs the whole iteration (micro-batch gradients summed as ``(loss / k).backward()``
does, ``clip_grad_norm_``, AdamW) as one jitted program from ``opt.make_train_step``; torch runs
its usual loop.  Per step it prints both losses and lrs; at the end the largest parameter and
EMA differences (float rounding: ~1e-15 relative).
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsched import optim
from jaxsched.optim import lr_scheduler, swa_utils

jax.config.update("jax_enable_x64", True)

SIZES = {"embed": (6, 16), "hidden": (16, 16), "head": (16, 1)}


def init(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    params = {name: {"kernel": rng.normal(size=s) / math.sqrt(s[0])} for name, s in SIZES.items()}
    for name, (_, width) in SIZES.items():
        params[name]["bias"] = np.zeros(width)
    return params


def loss_fn(params, x, y):
    h = jnp.tanh(x @ params["embed"]["kernel"] + params["embed"]["bias"])
    h = h + jnp.tanh(h @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    out = h @ params["head"]["kernel"] + params["head"]["bias"]
    return jnp.mean((out - y) ** 2)


def torch_loss(t, x, y):
    h = torch.tanh(x @ t["embed.kernel"] + t["embed.bias"])
    h = h + torch.tanh(h @ t["hidden.kernel"] + t["hidden.bias"])
    out = h @ t["head.kernel"] + t["head.bias"]
    return torch.mean((out - y) ** 2)


def warmup_cosine(warmup: int, total: int):
    def factor(step):  # Hugging Face's get_cosine_schedule_with_warmup
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


def batches(steps: int, k: int, n: int = 8):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 1))
    xs = rng.normal(size=(steps, k, n, 6))
    return xs, np.sin(xs @ w)


def groups_by_rule(params: dict) -> list[dict]:
    """nanoGPT's rule: weight decay for matrices (ndim >= 2), none for biases."""
    decay = {name: {"kernel": p["kernel"]} for name, p in params.items()}
    no_decay = {name: {"bias": p["bias"]} for name, p in params.items()}
    return [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]


def main(steps: int = 30, k: int = 4) -> dict[str, float]:
    xs, ys = batches(steps, k)
    factor = warmup_cosine(warmup=steps // 5, total=steps)

    # -- jaxsched ---------------------------------------------------------------------------
    params = jax.tree.map(jnp.asarray, init())
    opt = optim.AdamW(groups_by_rule(params), lr=3e-3, betas=(0.9, 0.95))
    scheduler = lr_scheduler.LambdaLR(opt, factor)
    train_step = opt.make_train_step(loss_fn, accumulation_steps=k, max_norm=1.0)
    ema = swa_utils.AveragedModel(opt.params, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9))

    # -- torch ------------------------------------------------------------------------------
    tensors = {
        f"{name}.{kind}": torch.tensor(np.asarray(v), requires_grad=True)
        for name, leaves in init().items()
        for kind, v in leaves.items()
    }
    torch_opt = torch.optim.AdamW(
        [{"params": [(n, t) for n, t in tensors.items() if n.endswith("kernel")],
          "weight_decay": 0.1},
         {"params": [(n, t) for n, t in tensors.items() if n.endswith("bias")],
          "weight_decay": 0.0}],
        lr=3e-3, betas=(0.9, 0.95),
    )  # fmt: skip
    torch_scheduler = torch.optim.lr_scheduler.LambdaLR(torch_opt, factor)
    module = torch.nn.Module()
    for i, t in enumerate(tensors.values()):
        module.register_parameter(f"p{i}", torch.nn.Parameter(t.detach().clone()))
    torch_ema = torch.optim.swa_utils.AveragedModel(
        module, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9)
    )

    worst_loss = 0.0
    for step in range(steps):
        lr = opt.param_groups[0]["lr"]
        loss = float(train_step(xs[step], ys[step]))
        scheduler.step()
        ema.update_parameters(opt.params)

        torch_opt.zero_grad()
        torch_total = 0.0
        for x, y in zip(xs[step], ys[step], strict=True):
            scaled = torch_loss(tensors, torch.tensor(x), torch.tensor(y)) / k
            scaled.backward()
            torch_total += float(scaled.detach())
        torch.nn.utils.clip_grad_norm_(list(tensors.values()), 1.0)
        torch_lr = torch_opt.param_groups[0]["lr"]
        torch_opt.step()
        torch_scheduler.step()
        with torch.no_grad():
            for p, t in zip(module.parameters(), tensors.values(), strict=True):
                p.copy_(t)
        torch_ema.update_parameters(module)

        worst_loss = max(worst_loss, abs(loss - torch_total) / abs(torch_total))
        print(f"step {step:3d}  loss {loss:.6f}  torch {torch_total:.6f}  "
              f"lr {lr:.3e}  torch lr {torch_lr:.3e}")  # fmt: skip

    def flat(tree: dict) -> dict:
        return {
            f"{name}.{kind}": np.asarray(v) for name, d in tree.items() for kind, v in d.items()
        }

    ours, our_ema = flat(opt.params), flat(ema.module)
    theirs = {n: t.detach().numpy() for n, t in tensors.items()}
    their_ema = dict(zip(tensors, (p.detach().numpy() for p in torch_ema.module.parameters()),
                         strict=True))  # fmt: skip
    result = {
        "loss": worst_loss,
        "params": max(float(np.max(np.abs(ours[n] - theirs[n]))) for n in theirs),
        "ema": max(float(np.max(np.abs(our_ema[n] - their_ema[n]))) for n in theirs),
    }
    print(f"max relative loss difference {result['loss']:.2e}")
    print(f"max |params - torch| {result['params']:.2e}")
    print(f"max |ema - torch ema| {result['ema']:.2e}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--accumulation", type=int, default=4)
    args = parser.parse_args()
    main(args.steps, args.accumulation)
