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
]
IDS = [c[0] for c in CASES]
