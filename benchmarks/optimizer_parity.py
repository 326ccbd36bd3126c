"""Parity report: each jaxsched optimizer and its optax namesake against torch.optim.

Run:  python benchmarks/optimizer_parity.py [--steps 1000]

Same random gradients for all three (params of shapes (4, 3), (5,), ()); the figure is
max|ours - torch| / max|torch| over the parameter tree after ``--steps`` steps, in float32 and
float64 (torch in the same precision).  The optax column maps torch's arguments onto the
nearest optax call, as a migrating user would write it.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import optax
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jaxsched as J
from tests.torch_reference import random_problem, relative_difference, torch_trajectory
from tests.transforms.harness import jax_trajectory

O = torch.optim
ROWS = [
    (
        "SGD(momentum=0.9)",
        J.sgd,
        O.SGD,
        dict(lr=0.01, momentum=0.9),
        lambda: optax.sgd(0.01, momentum=0.9),
    ),
    (
        "SGD(momentum=0.9, dampening=0.1)",
        J.sgd,
        O.SGD,
        dict(lr=0.01, momentum=0.9, dampening=0.1),
        lambda: optax.sgd(0.01, momentum=0.9),
    ),
    ("Adam", J.adam, O.Adam, dict(lr=0.01), lambda: optax.adam(0.01)),
    (
        "Adam(amsgrad=True)",
        J.adam,
        O.Adam,
        dict(lr=0.01, amsgrad=True),
        lambda: optax.amsgrad(0.01),
    ),
    (
        "Adam(weight_decay=0.1)",
        J.adam,
        O.Adam,
        dict(lr=0.01, weight_decay=0.1),
        lambda: optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01)),
    ),
    ("AdamW (defaults)", J.adamw, O.AdamW, dict(lr=0.01), lambda: optax.adamw(0.01)),
    ("Adagrad", J.adagrad, O.Adagrad, dict(lr=0.1), lambda: optax.adagrad(0.1)),
    (
        "Adadelta",
        J.adadelta,
        O.Adadelta,
        dict(lr=1.0),
        lambda: optax.adadelta(1.0, rho=0.9, eps=1e-6),
    ),
    ("Adamax", J.adamax, O.Adamax, dict(lr=0.002), lambda: optax.adamax(0.002)),
    ("ASGD", J.asgd, O.ASGD, dict(lr=0.01), None),
    ("NAdam", J.nadam, O.NAdam, dict(lr=0.002), lambda: optax.nadam(0.002)),
    ("RAdam", J.radam, O.RAdam, dict(lr=0.001), lambda: optax.radam(0.001)),
    ("RMSprop", J.rmsprop, O.RMSprop, dict(lr=0.001), lambda: optax.rmsprop(0.001)),
    (
        "RMSprop(momentum=0.9)",
        J.rmsprop,
        O.RMSprop,
        dict(lr=0.001, momentum=0.9),
        lambda: optax.rmsprop(0.001, decay=0.99, eps=1e-8, eps_in_sqrt=False, momentum=0.9),
    ),
    ("Rprop", J.rprop, O.Rprop, dict(lr=0.01), lambda: optax.rprop(0.01)),
    ("Adafactor", J.adafactor, O.Adafactor, dict(lr=0.01), lambda: optax.adafactor(0.01)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    params, grads = random_problem(args.steps, seed=0)
    print(f"relative difference to torch after {args.steps} steps (max|Δ| / max|θ_torch|)")
    print(f"{'torch optimizer':34s} {'jaxsched f32':>12s} {'jaxsched f64':>12s} {'optax f32':>10s}")
    for name, ours, cls, kwargs, namesake in ROWS:
        cells = []
        for precision in ("float32", "float64"):
            jax.config.update("jax_enable_x64", precision == "float64")
            ref = torch_trajectory(cls, kwargs, params, grads, precision)
            got, _ = jax_trajectory(ours(**kwargs), params, grads, precision)
            cells.append(relative_difference(got, ref))
            if precision == "float32":
                ref32 = ref
        jax.config.update("jax_enable_x64", False)
        optax_cell = "-"
        if namesake is not None:
            got, _ = jax_trajectory(namesake(), params, grads, "float32")
            optax_cell = f"{relative_difference(got, ref32):.1e}"
        print(f"{name:34s} {cells[0]:12.1e} {cells[1]:12.1e} {optax_cell:>10s}")


if __name__ == "__main__":
    main()
