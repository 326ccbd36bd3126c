"""The JAX side of the torchvision-style CNN recipe, as ``python -m jaxsched.interop
--setup`` takes it (used by test_command.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsched import optim
from jaxsched.optim import lr_scheduler

from .models import LinenCNN, TorchCNN


def setup():
    variables = LinenCNN().init(jax.random.key(0), jnp.ones((1, 7, 7, 3)))
    variables = jax.tree.map(lambda a: a.astype(jnp.float64), variables)
    groups = optim.split_groups(
        variables["params"], [{"params": lambda n, p: p.ndim > 1}, {"params": "*"}]
    )
    opt = optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
    return {
        "optimizer": opt,
        "variables": variables,
        "schedulers": lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
        "names": TorchCNN().double().state_dict(),
    }
