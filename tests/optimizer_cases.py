"""The optimizer registry of the tests (torch's ``optim_db`` idea): one table of cases drives
the functional parity (:mod:`tests.transforms.test_parity`), the stateful parity on every engine,
state dicts and key order (:mod:`tests.optim.test_optimizer`).

A case is a torch class name (a row of ``jaxsched.transforms._registry.SPECS``), the shared
keyword arguments, and a second parameter group's overrides (the stateful tests run two groups);
each case switches on the features its id names.  Tolerances live in
:mod:`tests.torch_reference` (``OPTIM_RTOL``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from jaxsched import optim
from jaxsched.transforms._registry import SPECS


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    name: str  # torch's class name
    kwargs: dict[str, Any]
    second: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def factory(self):
        return SPECS[self.name].factory

    @property
    def torch_class(self) -> type:
        return getattr(torch.optim, self.name)

    @property
    def jaxsched_class(self) -> type:
        return getattr(optim, self.name)

    @property
    def has_kernel(self) -> bool:
        return SPECS[self.name].kernel is not None

    def arguments(self, engine: str) -> dict[str, Any]:
        """The shared arguments for a run on ``engine`` (``fused=False`` picks XLA where the
        optimizer has kernels)."""
        return dict(
            self.kwargs, **({"fused": False} if self.has_kernel and engine == "xla" else {})
        )


C = Case
CASES = [
    C("sgd-plain", "SGD", dict(lr=0.01), dict(lr=0.05, weight_decay=0.1)),
    C("sgd-momentum", "SGD", dict(lr=0.01, momentum=0.9), dict(lr=0.001, nesterov=True)),
    C("sgd-dampening-wd", "SGD", dict(lr=0.01, momentum=0.9, dampening=0.3, weight_decay=0.1),
      dict(dampening=0.0)),
    C("sgd-nesterov-max", "SGD", dict(lr=0.01, momentum=0.8, nesterov=True, maximize=True),
      dict(momentum=0.5)),
    C("sgd-dampening-inert", "SGD", dict(lr=0.01, dampening=0.5), dict(momentum=0.5)),
    C("adam", "Adam", dict(lr=0.01), dict(lr=0.001, betas=(0.8, 0.99), amsgrad=True)),
    C("adam-l2-amsgrad", "Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True),
      dict(eps=1e-4)),
    C("adam-decoupled-max", "Adam",
      dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, decoupled_weight_decay=True,
           maximize=True),
      dict(weight_decay=0.0)),
    C("adamw", "AdamW", dict(lr=0.01), dict(weight_decay=0.1, eps=1e-4)),
    C("adamw-amsgrad-eps", "AdamW", dict(lr=0.003, eps=1e-3, amsgrad=True, weight_decay=0.3),
      dict(lr=0.01, maximize=True)),
    C("adagrad", "Adagrad", dict(lr=0.1), dict(lr_decay=0.01, initial_accumulator_value=0.1)),
    C("adagrad-decay-init-wd", "Adagrad",
      dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.5, weight_decay=0.05, eps=1e-6),
      dict(weight_decay=0.0)),
    C("adagrad-max", "Adagrad", dict(lr=0.05, maximize=True), dict(lr=0.1)),
    C("adadelta", "Adadelta", dict(), dict(rho=0.8, weight_decay=0.01)),
    C("adadelta-wd-max", "Adadelta",
      dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1, maximize=True), dict(lr=1.0)),
    C("adamax", "Adamax", dict(lr=0.01), dict(betas=(0.5, 0.9))),
    C("adamax-wd-max", "Adamax",
      dict(lr=0.01, betas=(0.7, 0.9), eps=1e-3, weight_decay=0.1, maximize=True),
      dict(weight_decay=0.01)),
    C("rmsprop", "RMSprop", dict(lr=0.001), dict(momentum=0.9, centered=True)),
    C("rmsprop-centered-momentum-wd", "RMSprop",
      dict(lr=0.001, alpha=0.9, centered=True, momentum=0.9, weight_decay=0.1),
      dict(momentum=0.0)),
    C("rmsprop-momentum-max", "RMSprop", dict(lr=0.001, momentum=0.5, maximize=True),
      dict(alpha=0.95)),
    C("nadam", "NAdam", dict(lr=0.01),
      dict(momentum_decay=0.01, decoupled_weight_decay=True, weight_decay=0.1)),
    C("nadam-wd-psi", "NAdam", dict(lr=0.01, weight_decay=0.1, momentum_decay=0.01),
      dict(lr=0.003)),
    C("nadam-decoupled-max", "NAdam",
      dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
      dict(betas=(0.8, 0.95))),
    C("radam", "RAdam", dict(lr=0.01), dict(betas=(0.8, 0.95), weight_decay=0.1)),
    C("radam-wd-betas", "RAdam", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1),
      dict(decoupled_weight_decay=True)),
    C("radam-decoupled-max", "RAdam",
      dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
      dict(lr=0.001)),
    C("asgd", "ASGD", dict(lr=0.01, t0=5), dict(lambd=1e-3, alpha=0.5)),
    C("asgd-t0-wd", "ASGD",
      dict(lr=0.01, lambd=1e-3, alpha=0.5, t0=100, weight_decay=0.1, maximize=True),
      dict(t0=5)),
    C("rprop", "Rprop", dict(lr=0.01), dict(etas=(0.3, 1.5), step_sizes=(1e-4, 1.0))),
    C("rprop-etas-max", "Rprop",
      dict(lr=0.001, etas=(0.3, 1.5), step_sizes=(1e-4, 0.1), maximize=True), dict(lr=0.01)),
    C("adafactor", "Adafactor", dict(lr=0.01), dict(d=2.0, weight_decay=0.1)),
    C("adafactor-wd-eps-d-max", "Adafactor",
      dict(lr=0.05, beta2_decay=-0.5, eps=(1e-20, 1e-2), d=2.0, weight_decay=0.1, maximize=True),
      dict(lr=0.01)),
]  # fmt: skip
IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS)


def runs() -> list:
    """Every case on every engine it can run on (the kernels where the optimizer has them, and
    the transform under XLA), as pytest params with ids ``<case>-<engine>``.  Beyond the first
    case of each optimizer and engine they are ``slow``: the fast lane keeps one case per
    optimizer and engine, CI runs them all."""
    seen, params = set(), []
    for case in CASES:
        for engine in ("kernel", "xla") if case.has_kernel else ("xla",):
            marks = () if (case.name, engine) not in seen else (pytest.mark.slow,)
            seen.add((case.name, engine))
            params.append(pytest.param(case, engine, id=f"{case.id}-{engine}", marks=marks))
    return params


def first_case_per_optimizer() -> list:
    """Every case as a pytest param; beyond the first case of each optimizer ``slow``."""
    seen, params = set(), []
    for case in CASES:
        marks = () if case.name not in seen else (pytest.mark.slow,)
        seen.add(case.name)
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params
