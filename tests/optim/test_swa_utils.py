"""SWALR against torch.optim.swa_utils.SWALR: the lr sequence bit for bit (both strategies, 0
and more anneal epochs, per-group swa_lr, hand-written lrs and another scheduler before it),
state dicts both ways, torch's errors."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
import torch
from torch.optim import swa_utils as T

from jaxsched import optim
from jaxsched.optim import lr_scheduler, swa_utils


def pair(lrs=(0.1, 0.02)):
    tensors = [torch.zeros(2, requires_grad=True) for _ in lrs]
    topt = torch.optim.SGD([{"params": [t], "lr": lr} for t, lr in zip(tensors, lrs, strict=True)])
    opt = optim.SGD([{"params": {f"p{i}": jnp.zeros(2)}, "lr": lr} for i, lr in enumerate(lrs)])
    return topt, opt


def step_both(topt, opt, scheds):
    for t in topt.param_groups:
        t["params"][0].grad = torch.zeros(2)
    topt.step()
    opt.step({f"p{i}": jnp.zeros(2) for i in range(len(opt.param_groups))})
    for theirs, ours in scheds:
        theirs.step()
        ours.step()


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("epochs", [0, 1, 5])
@pytest.mark.parametrize("swa_lr", [0.05, [0.05, 0.001]])
def test_lr_sequence_is_torchs_bit_for_bit(strategy, epochs, swa_lr):
    topt, opt = pair()
    theirs = T.SWALR(topt, swa_lr, anneal_epochs=epochs, anneal_strategy=strategy)
    ours = swa_utils.SWALR(opt, swa_lr, anneal_epochs=epochs, anneal_strategy=strategy)
    assert ours.get_last_lr() == theirs.get_last_lr()
    for step in range(12):
        if step == 3:  # a hand-written lr mid-anneal: both restart from it
            topt.param_groups[0]["lr"] = opt.param_groups[0]["lr"] = 0.3
        step_both(topt, opt, [(theirs, ours)])
        assert ours.get_last_lr() == theirs.get_last_lr(), step
        assert [g["swa_lr"] for g in opt.param_groups] == [g["swa_lr"] for g in topt.param_groups]


def test_after_another_scheduler_and_state_dicts_both_ways():
    """torch's recipe: a decay until swa_start, then SWALR; then resume from either side."""
    topt, opt = pair()
    tdecay = torch.optim.lr_scheduler.MultiplicativeLR(topt, lambda e: 0.9)
    decay = lr_scheduler.MultiplicativeLR(opt, lambda e: 0.9)
    tswa = T.SWALR(topt, 0.05, anneal_epochs=4, anneal_strategy="linear")
    swa = swa_utils.SWALR(opt, 0.05, anneal_epochs=4, anneal_strategy="linear")
    for epoch in range(10):
        step_both(topt, opt, [(tdecay, decay)] if epoch < 5 else [(tswa, swa)])
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
    assert swa.state_dict() == tswa.state_dict()
    topt2, opt2 = pair()
    resumed = swa_utils.SWALR(opt2, 0.01, anneal_epochs=1)
    resumed.load_state_dict(tswa.state_dict())
    tresumed = T.SWALR(topt2, 0.01, anneal_epochs=1)
    tresumed.load_state_dict(swa.state_dict())
    for g, t in zip(opt2.param_groups, topt2.param_groups, strict=True):
        g["lr"], t["lr"] = opt.param_groups[0]["lr"], topt.param_groups[0]["lr"]
    for _ in range(3):
        step_both(topt2, opt2, [(tresumed, resumed)])
        assert resumed.get_last_lr() == tresumed.get_last_lr()


def test_errors_are_torchs():
    _, opt = pair()
    with pytest.raises(
        ValueError, match="anneal_strategy must be one of 'cos' or 'linear', instead got sin"
    ):
        swa_utils.SWALR(opt, 0.05, anneal_strategy="sin")
    with pytest.raises(ValueError, match="anneal_epochs must be equal or greater than 0, got -1"):
        swa_utils.SWALR(opt, 0.05, anneal_epochs=-1)
    with pytest.raises(ValueError, match="swa_lr must have the same length"):
        swa_utils.SWALR(opt, [0.1, 0.2, 0.3])
