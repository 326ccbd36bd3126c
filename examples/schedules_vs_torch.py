"""Every jaxsched schedule next to the torch scheduler it reproduces.

Run:  python examples/schedules_vs_torch.py [--epochs 1000] [--plot schedules.png]

For each schedule this prints a few values of jaxsched and of torch (when torch is installed)
and the largest difference over all epochs, in JAX's default float32 and under
``jax_enable_x64``.  With matplotlib installed it also draws every curve into a PNG.
"""

from __future__ import annotations

import argparse
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import jaxsched.schedules as S

try:
    import torch
    from torch.optim import lr_scheduler as L
except ImportError:  # the comparison columns are left out
    torch = None
    L = None

BASE_LR = 0.1


def catalog(epochs: int):
    """(name, jaxsched schedule factory, torch scheduler factory or None, epochs to show)."""
    lin = (0.01, 1.0, 10)
    return [
        (
            "LambdaLR 1/(1+0.05e)",
            lambda: S.lambda_lr(BASE_LR, lambda e: 1 / (1 + 0.05 * e)),
            lambda o: L.LambdaLR(o, lambda e: 1 / (1 + 0.05 * e)),
        ),
        (
            "MultiplicativeLR 0.97",
            lambda: S.multiplicative_lr(BASE_LR, lambda e: 0.97),
            lambda o: L.MultiplicativeLR(o, lambda e: 0.97),
        ),
        ("StepLR(30, 0.1)", lambda: S.step_lr(BASE_LR, 30, 0.1), lambda o: L.StepLR(o, 30, 0.1)),
        (
            "MultiStepLR([30,80,150])",
            lambda: S.multistep_lr(BASE_LR, [30, 80, 150]),
            lambda o: L.MultiStepLR(o, [30, 80, 150]),
        ),
        ("ConstantLR(1/3, 5)", lambda: S.constant_lr(BASE_LR), lambda o: L.ConstantLR(o)),
        (
            "LinearLR(0.01, 1, 40)",
            lambda: S.linear_lr(BASE_LR, 0.01, 1.0, 40),
            lambda o: L.LinearLR(o, 0.01, 1.0, 40),
        ),
        (
            "ExponentialLR(0.99)",
            lambda: S.exponential_lr(BASE_LR, 0.99),
            lambda o: L.ExponentialLR(o, 0.99),
        ),
        (
            "PolynomialLR(50, 0.9)",
            lambda: S.polynomial_lr(BASE_LR, 50, 0.9),
            lambda o: L.PolynomialLR(o, 50, 0.9),
        ),
        (
            "CosineAnnealingLR(100)",
            lambda: S.cosine_annealing_lr(BASE_LR, 100),
            lambda o: L.CosineAnnealingLR(o, 100),
        ),
        (
            "CosineAnnealingWarmRestarts(10,2)",
            lambda: S.cosine_annealing_warm_restarts(BASE_LR, 10, 2, 1e-3),
            lambda o: L.CosineAnnealingWarmRestarts(o, 10, 2, 1e-3),
        ),
        (
            "CyclicLR exp_range",
            lambda: S.cyclic_lr(0.01, BASE_LR, 50, mode="exp_range", gamma=0.998),
            lambda o: L.CyclicLR(o, 0.01, BASE_LR, 50, mode="exp_range", gamma=0.998),
        ),
        (
            "OneCycleLR(total=1000)",
            lambda: S.one_cycle_lr(BASE_LR, total_steps=epochs),
            lambda o: L.OneCycleLR(o, BASE_LR, total_steps=epochs),
        ),
        (
            "SequentialLR[Linear, Cosine]",
            lambda: S.sequential_lr(
                [S.linear_lr(BASE_LR, *lin), S.cosine_annealing_lr(BASE_LR, epochs - 10)], [10]
            ),
            lambda o: L.SequentialLR(
                o, [L.LinearLR(o, *lin), L.CosineAnnealingLR(o, epochs - 10)], [10]
            ),
        ),
        (
            "ChainedScheduler[Linear, Exp]",
            lambda: S.chained_lr(
                BASE_LR, S.linear_lr(1.0, 0.1, 1.0, 5), S.exponential_lr(1.0, 0.99)
            ),
            lambda o: L.ChainedScheduler([L.LinearLR(o, 0.1, 1.0, 5), L.ExponentialLR(o, 0.99)]),
        ),
    ]


def torch_values(make, epochs: int) -> np.ndarray:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=BASE_LR, momentum=0.9)
    sched = make(opt)
    out = [sched.get_last_lr()[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs - 1):
            opt.step()
            sched.step()
            out.append(sched.get_last_lr()[0])
    return np.asarray(out)


def jax_values(make, epochs: int, x64: bool) -> np.ndarray:
    jax.config.update("jax_enable_x64", x64)
    try:
        return np.asarray(jax.jit(jax.vmap(make()))(jnp.arange(epochs)), dtype=np.float64)
    finally:
        jax.config.update("jax_enable_x64", False)


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """The contract's measure: |Δ| / (|torch| + 1e-3 · peak)."""
    return float(np.max(np.abs(ours - ref) / (np.abs(ref) + 1e-3 * np.max(np.abs(ref)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--plot", default="schedules.png", help="PNG path ('' to skip)")
    args = parser.parse_args()
    show = [0, 1, 10, 100, args.epochs - 1]
    header = f"{'schedule':34s} " + " ".join(f"{'e=' + str(e):>10s}" for e in show)
    if torch is not None:
        header += f" {'max|Δ| f32':>11s} {'rel f32':>8s} {'max|Δ| x64':>11s} {'rel x64':>8s}"
    print(header)
    curves = {}
    for name, ours, theirs in catalog(args.epochs):
        f32 = jax_values(ours, args.epochs, x64=False)
        curves[name] = f32
        line = f"{name:34s} " + " ".join(f"{f32[e]:10.4g}" for e in show)
        if torch is not None:
            ref = torch_values(theirs, args.epochs)
            f64 = jax_values(ours, args.epochs, x64=True)
            print(line)
            print(f"{'  torch':34s} " + " ".join(f"{ref[e]:10.4g}" for e in show), end=" ")
            print(
                f"{np.max(np.abs(f32 - ref)):11.2e} {relative_error(f32, ref):8.1e} "
                f"{np.max(np.abs(f64 - ref)):11.2e} {relative_error(f64, ref):8.1e}"
            )
        else:
            print(line)
    if torch is None:
        print("(install torch==2.13.0 to print torch's values and the differences)")
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("(install matplotlib to draw the curves)")
            return
        cols = 4
        rows = math.ceil(len(curves) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
        for ax, (name, values) in zip(axes.flat, curves.items(), strict=False):
            ax.plot(values, lw=1)
            ax.set_title(name, fontsize=9)
        for ax in list(axes.flat)[len(curves) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=80)
        print(f"curves written to {args.plot}")


if __name__ == "__main__":
    main()
