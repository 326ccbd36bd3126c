"""The parity table: each case builds a jaxsched schedule and the torch scheduler it mirrors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jax.numpy as jnp
from torch.optim import lr_scheduler as L

import jaxsched.schedules as S


@dataclass(frozen=True)
class Case:
    id: str
    ours: Callable[[], Callable]
    theirs: Callable[[object], object]
    steps: int = 300
    base_lr: float = 0.1
    momentum: Callable[[], Callable] | None = None  # companion momentum schedule
    torch_kw: dict = field(default_factory=dict)


def same(id, factory, cls, *args, steps=300, base_lr=0.1, **kw) -> Case:
    """A case whose jaxsched factory takes torch's arguments, with base_lr first."""
    return Case(
        id,
        lambda: factory(base_lr, *args, **kw),
        lambda opt: cls(opt, *args, **kw),
        steps=steps,
        base_lr=base_lr,
    )


def inv(e):
    return 1.0 / (1.0 + 0.05 * e)


def sequential(id, children, milestones, steps=300):
    """children: list of (jaxsched factory with base_lr=0.1, torch class, args, kwargs)."""
    return Case(
        id,
        lambda: S.sequential_lr([f(0.1, *a, **k) for f, _, a, k in children], milestones),
        lambda opt: L.SequentialLR(opt, [c(opt, *a, **k) for _, c, a, k in children], milestones),
        steps=steps,
    )


def chained(id, children, steps=300):
    return Case(
        id,
        lambda: S.chained_lr(0.1, *[f(1.0, *a, **k) for f, _, a, k in children]),
        lambda opt: L.ChainedScheduler([c(opt, *a, **k) for _, c, a, k in children]),
        steps=steps,
    )


def cyclic(id, base, peak, steps=300, **kw):
    return Case(
        id,
        lambda: S.cyclic_lr(base, peak, **kw),
        lambda opt: L.CyclicLR(opt, base, peak, cycle_momentum=True, **kw),
        steps=steps,
        momentum=lambda: S.cyclic_momentum(base, peak, **kw),
        torch_kw={"momentum": True},
    )


def one_cycle(id, peak, steps, **kw):
    total = kw.get("total_steps") or kw["epochs"] * kw["steps_per_epoch"]
    return Case(
        id,
        lambda: S.one_cycle_lr(peak, **kw),
        lambda opt: L.OneCycleLR(opt, peak, **kw),
        steps=min(steps, total),
        momentum=lambda: S.one_cycle_momentum(peak, **kw),
        torch_kw={"momentum": True},
    )


CASES: list[Case] = [
    same("lambda-inv", S.lambda_lr, L.LambdaLR, inv, steps=1000),
    same("lambda-warmup", S.lambda_lr, L.LambdaLR, lambda e: jnp.minimum(1.0, (e + 1) / 10)),
    same("lambda-expdecay", S.lambda_lr, L.LambdaLR, lambda e: jnp.exp(-0.01 * e)),
    same("multiplicative-const", S.multiplicative_lr, L.MultiplicativeLR, lambda e: 0.97),
    same("multiplicative-inv", S.multiplicative_lr, L.MultiplicativeLR, inv, steps=200),
    same("step-30", S.step_lr, L.StepLR, 30, 0.1, steps=1000),
    same("step-3-half", S.step_lr, L.StepLR, 3, 0.5),
    same("step-1-gamma>1", S.step_lr, L.StepLR, 1, 1.01, steps=1000),
    same("step-negative-gamma", S.step_lr, L.StepLR, 2, -0.9, steps=60),
    same("step-gamma0", S.step_lr, L.StepLR, 5, 0.0, steps=20),
    same("multistep", S.multistep_lr, L.MultiStepLR, [30, 80, 150], 0.1),
    same("multistep-dup-unsorted", S.multistep_lr, L.MultiStepLR, [80, 30, 30, 150], 0.5),
    same("multistep-zero", S.multistep_lr, L.MultiStepLR, [0, 5], 0.1, steps=20),
    same("constant-default", S.constant_lr, L.ConstantLR, steps=20),
    same("constant-0.5-8", S.constant_lr, L.ConstantLR, 0.5, 8, steps=20),
    same("constant-total0", S.constant_lr, L.ConstantLR, 0.25, 0, steps=10),
    same("constant-factor1", S.constant_lr, L.ConstantLR, 1.0, 3, steps=10),
    same("linear-default", S.linear_lr, L.LinearLR, steps=20),
    same("linear-warmup", S.linear_lr, L.LinearLR, 0.01, 1.0, 40, steps=100),
    same("linear-decay", S.linear_lr, L.LinearLR, 1.0, 0.1, 100, steps=1000),
    same("linear-to-zero", S.linear_lr, L.LinearLR, 1.0, 0.0, 10, steps=30),
    same("exponential-0.95", S.exponential_lr, L.ExponentialLR, 0.95, steps=1000),
    same("exponential-0.99", S.exponential_lr, L.ExponentialLR, 0.99, steps=1000),
    same("exponential-0.999", S.exponential_lr, L.ExponentialLR, 0.999, steps=1000),
    same("exponential-negative", S.exponential_lr, L.ExponentialLR, -0.9, steps=50),
    same("exponential-zero", S.exponential_lr, L.ExponentialLR, 0.0, steps=5),
    same("polynomial-50-0.9", S.polynomial_lr, L.PolynomialLR, 50, 0.9),
    same("polynomial-200-2", S.polynomial_lr, L.PolynomialLR, 200, 2.0),
    same("polynomial-default", S.polynomial_lr, L.PolynomialLR, steps=20),
    same("polynomial-7-0.5", S.polynomial_lr, L.PolynomialLR, 7, 0.5, steps=30),
    same("polynomial-power0", S.polynomial_lr, L.PolynomialLR, 4, 0.0, steps=10),
    same("cosine-100", S.cosine_annealing_lr, L.CosineAnnealingLR, 100, steps=1000),
    same("cosine-100-eta", S.cosine_annealing_lr, L.CosineAnnealingLR, 100, 1e-3, steps=1000),
    same("cosine-7", S.cosine_annealing_lr, L.CosineAnnealingLR, 7, steps=1000),
    same("cosine-10-eta>0", S.cosine_annealing_lr, L.CosineAnnealingLR, 10, 0.05, steps=100),
    same("cosine-1000", S.cosine_annealing_lr, L.CosineAnnealingLR, 1000, 1e-5, steps=1000),
    same("cosine-1", S.cosine_annealing_lr, L.CosineAnnealingLR, 1, steps=20),
    same("cawr-50", S.cosine_annealing_warm_restarts, L.CosineAnnealingWarmRestarts, 50),
    same(
        "cawr-10-2-eta",
        S.cosine_annealing_warm_restarts,
        L.CosineAnnealingWarmRestarts,
        10,
        2,
        1e-3,
        steps=1000,
    ),
    same("cawr-1-3", S.cosine_annealing_warm_restarts, L.CosineAnnealingWarmRestarts, 1, 3, 0.0),
    same("cawr-5-3", S.cosine_annealing_warm_restarts, L.CosineAnnealingWarmRestarts, 5, 3),
    same("cawr-1-1", S.cosine_annealing_warm_restarts, L.CosineAnnealingWarmRestarts, 1),
    cyclic("cyclic-triangular", 0.01, 0.1, step_size_up=20),
    cyclic("cyclic-triangular2", 0.01, 0.1, step_size_up=15, step_size_down=25, mode="triangular2"),
    cyclic(
        "cyclic-exp-range", 0.001, 0.1, steps=1000, step_size_up=50, mode="exp_range", gamma=0.998
    ),
    cyclic("cyclic-base0", 0.0, 0.1, step_size_up=7),
    cyclic("cyclic-down0", 0.01, 0.1, step_size_up=5, step_size_down=0),
    cyclic("cyclic-float-sizes", 0.01, 0.1, step_size_up=2.5, step_size_down=3.5),
    cyclic(
        "cyclic-custom-cycle",
        0.01,
        0.1,
        step_size_up=4,
        scale_fn=lambda c: 1.0 / (1.0 + c),
        scale_mode="cycle",
    ),
    cyclic(
        "cyclic-custom-iter",
        0.01,
        0.1,
        step_size_up=4,
        scale_fn=lambda x: 1.0 / (1.0 + 0.01 * x),
        scale_mode="iterations",
    ),
    one_cycle("onecycle-cos", 1.0, 300, total_steps=300),
    one_cycle("onecycle-linear", 0.5, 300, total_steps=300, anneal_strategy="linear"),
    one_cycle(
        "onecycle-3phase-lin", 1.0, 300, total_steps=300, anneal_strategy="linear", three_phase=True
    ),
    one_cycle("onecycle-3phase-cos", 0.1, 100, total_steps=100, three_phase=True),
    one_cycle("onecycle-epochs", 0.1, 1000, epochs=10, steps_per_epoch=97, pct_start=0.25),
    one_cycle("onecycle-odd", 0.3, 10, total_steps=10),
    one_cycle("onecycle-pct0", 0.3, 10, total_steps=10, pct_start=0.0),
    one_cycle("onecycle-pct1", 0.3, 9, total_steps=10, pct_start=1.0),
    sequential(
        "seq-linear-cosine",
        [
            (S.linear_lr, L.LinearLR, (0.01, 1.0, 10), {}),
            (S.cosine_annealing_lr, L.CosineAnnealingLR, (290,), {}),
        ],
        [10],
    ),
    sequential(
        "seq-constant-exp",
        [
            (S.constant_lr, L.ConstantLR, (0.1, 20), {}),
            (S.exponential_lr, L.ExponentialLR, (0.9,), {}),
        ],
        [3],
    ),
    sequential(
        "seq-step-step",
        [(S.step_lr, L.StepLR, (2, 0.5), {}), (S.step_lr, L.StepLR, (2, 0.5), {})],
        [3],
        steps=20,
    ),
    sequential(
        "seq-three-lambda",
        [
            (S.exponential_lr, L.ExponentialLR, (0.5,), {}),
            (S.lambda_lr, L.LambdaLR, (inv,), {}),
            (S.cosine_annealing_lr, L.CosineAnnealingLR, (10,), {}),
        ],
        [3, 8],
        steps=40,
    ),
    sequential(
        "seq-milestone0",
        [(S.exponential_lr, L.ExponentialLR, (0.5,), {}), (S.step_lr, L.StepLR, (3, 0.5), {})],
        [0],
        steps=20,
    ),
    sequential(
        "seq-dup-milestones",
        [
            (S.exponential_lr, L.ExponentialLR, (0.5,), {}),
            (S.exponential_lr, L.ExponentialLR, (0.7,), {}),
            (S.exponential_lr, L.ExponentialLR, (0.9,), {}),
        ],
        [3, 3],
        steps=20,
    ),
    chained(
        "chain-linear-exp",
        [
            (S.linear_lr, L.LinearLR, (0.1, 1.0, 5), {}),
            (S.exponential_lr, L.ExponentialLR, (0.9,), {}),
        ],
    ),
    chained(
        "chain-step-multistep-poly",
        [
            (S.step_lr, L.StepLR, (7, 0.5), {}),
            (S.multistep_lr, L.MultiStepLR, ([20, 40],), {}),
            (S.polynomial_lr, L.PolynomialLR, (100, 1.5), {}),
        ],
        steps=120,
    ),
]

CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS)
