"""The optimizer parity table: (id, jaxsched factory, torch class, shared keyword arguments)."""

from __future__ import annotations

import torch

import jaxsched.transforms as T

O = torch.optim

CASES = [
    ("sgd-plain", T.sgd, O.SGD, dict(lr=0.01)),
    ("sgd-momentum", T.sgd, O.SGD, dict(lr=0.01, momentum=0.9)),
    (
        "sgd-dampening-wd",
        T.sgd,
        O.SGD,
        dict(lr=0.01, momentum=0.9, dampening=0.3, weight_decay=0.1),
    ),
    ("sgd-nesterov-max", T.sgd, O.SGD, dict(lr=0.01, momentum=0.8, nesterov=True, maximize=True)),
    ("adam", T.adam, O.Adam, dict(lr=0.01)),
    ("adam-l2-amsgrad", T.adam, O.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (
        "adam-decoupled-max",
        T.adam,
        O.Adam,
        dict(
            lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, decoupled_weight_decay=True, maximize=True
        ),
    ),
    ("adamw", T.adamw, O.AdamW, dict(lr=0.01)),
    (
        "adamw-amsgrad-eps",
        T.adamw,
        O.AdamW,
        dict(lr=0.003, eps=1e-3, amsgrad=True, weight_decay=0.3),
    ),
    ("adagrad", T.adagrad, O.Adagrad, dict(lr=0.1)),
    (
        "adagrad-decay-init-wd",
        T.adagrad,
        O.Adagrad,
        dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.5, weight_decay=0.05, eps=1e-6),
    ),
    ("adagrad-max", T.adagrad, O.Adagrad, dict(lr=0.05, maximize=True)),
    ("adadelta", T.adadelta, O.Adadelta, dict()),
    (
        "adadelta-wd-max",
        T.adadelta,
        O.Adadelta,
        dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1, maximize=True),
    ),
    ("adamax", T.adamax, O.Adamax, dict(lr=0.01)),
    (
        "adamax-wd-max",
        T.adamax,
        O.Adamax,
        dict(lr=0.01, betas=(0.7, 0.9), eps=1e-3, weight_decay=0.1, maximize=True),
    ),
    ("rmsprop", T.rmsprop, O.RMSprop, dict(lr=0.001)),
    (
        "rmsprop-centered-momentum-wd",
        T.rmsprop,
        O.RMSprop,
        dict(lr=0.001, alpha=0.9, centered=True, momentum=0.9, weight_decay=0.1),
    ),
    ("rmsprop-momentum-max", T.rmsprop, O.RMSprop, dict(lr=0.001, momentum=0.5, maximize=True)),
    ("nadam", T.nadam, O.NAdam, dict(lr=0.01)),
    ("nadam-wd-psi", T.nadam, O.NAdam, dict(lr=0.01, weight_decay=0.1, momentum_decay=0.01)),
    (
        "nadam-decoupled-max",
        T.nadam,
        O.NAdam,
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    ),
    ("radam", T.radam, O.RAdam, dict(lr=0.01)),
    ("radam-wd-betas", T.radam, O.RAdam, dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)),
    (
        "radam-decoupled-max",
        T.radam,
        O.RAdam,
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    ),
    ("asgd", T.asgd, O.ASGD, dict(lr=0.01)),
    (
        "asgd-t0-wd",
        T.asgd,
        O.ASGD,
        dict(lr=0.01, lambd=1e-3, alpha=0.5, t0=100, weight_decay=0.1, maximize=True),
    ),
    ("rprop", T.rprop, O.Rprop, dict(lr=0.01)),
    (
        "rprop-etas-max",
        T.rprop,
        O.Rprop,
        dict(lr=0.001, etas=(0.3, 1.5), step_sizes=(1e-4, 0.1), maximize=True),
    ),
    ("adafactor", T.adafactor, O.Adafactor, dict(lr=0.01)),
    (
        "adafactor-wd-eps-d-max",
        T.adafactor,
        O.Adafactor,
        dict(lr=0.05, beta2_decay=-0.5, eps=(1e-20, 1e-2), d=2.0, weight_decay=0.1, maximize=True),
    ),
]
IDS = [c[0] for c in CASES]
