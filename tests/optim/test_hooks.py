"""Optimizer hooks against torch 2.13: the same registrations on both sides log the same calls
in the same order, return values act as in torch, handles remove."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from jaxsched import optim


def _pair():
    ours = optim.SGD({"w": jnp.ones(3)}, lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD([torch.ones(3, requires_grad=True)], lr=0.1, momentum=0.9)
    return ours, theirs


def _register_all(opt, log, register_global):
    handles = [
        register_global[0](lambda o, a, k: log.append("global pre")),
        opt.register_step_pre_hook(lambda o, a, k: log.append(f"pre {o is opt} {a[0] is opt}")),
        opt.register_step_post_hook(lambda o, a, k: log.append("post")),
        register_global[1](lambda o, a, k: log.append("global post")),
        opt.register_state_dict_pre_hook(lambda o: log.append("sd pre 1")),
        opt.register_state_dict_pre_hook(lambda o: log.append("sd pre 0"), prepend=True),
        opt.register_state_dict_post_hook(lambda o, sd: log.append(f"sd post {sorted(sd)}")),
        opt.register_load_state_dict_pre_hook(lambda o, sd: log.append("load pre")),
        opt.register_load_state_dict_post_hook(lambda o: log.append("load post")),
    ]
    return handles


def _exercise(opt, step):
    step()
    sd = opt.state_dict()
    opt.load_state_dict(sd)


def test_calls_and_order_match_torch():
    ours, theirs = _pair()
    our_log: list[str] = []
    their_log: list[str] = []
    ours_handles = _register_all(
        ours, our_log,
        (optim.register_optimizer_step_pre_hook, optim.register_optimizer_step_post_hook),
    )  # fmt: skip
    their_handles = _register_all(
        theirs, their_log,
        (register_optimizer_step_pre_hook, register_optimizer_step_post_hook),
    )  # fmt: skip
    try:
        _exercise(ours, lambda: ours.step({"w": jnp.ones(3)}))
        theirs.param_groups[0]["params"][0].grad = torch.ones(3)
        _exercise(theirs, theirs.step)
    finally:
        for h in ours_handles + their_handles:
            h.remove()
    assert our_log == their_log
    our_log.clear()
    ours.step({"w": jnp.ones(3)})
    ours.state_dict()
    assert our_log == []  # every handle removed


def test_a_pre_hook_may_replace_the_arguments():
    opt = optim.SGD({"w": jnp.ones(3)}, lr=0.1)

    def double(o, args, kwargs):
        self, grads = args
        return (self, {"w": grads["w"] * 2}), kwargs

    with opt.register_step_pre_hook(double):
        opt.step({"w": jnp.ones(3)})
    np.testing.assert_allclose(opt.params["w"], 0.8)
    opt.step({"w": jnp.ones(3)})  # removed at the end of the with block
    np.testing.assert_allclose(opt.params["w"], 0.7, rtol=1e-6)


def test_a_bad_pre_hook_result_raises_torchs_error():
    opt = optim.SGD({"w": jnp.ones(3)}, lr=0.1)
    opt.register_step_pre_hook(lambda o, a, k: 5)
    with pytest.raises(
        RuntimeError, match=r"must return None or a tuple of \(new_args, new_kwargs"
    ):
        opt.step({"w": jnp.ones(3)})
    with pytest.raises(TypeError, match="hook must be callable"):
        opt.register_step_post_hook(3)


def test_state_dict_hooks_replace_what_they_return():
    opt = optim.Adam({"w": jnp.ones(3)}, lr=0.1)
    opt.step({"w": jnp.ones(3)})
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    assert opt.state_dict()["extra"] == 1

    seen = []

    def swap_lr(o, sd):
        seen.append(sd)
        return {**sd, "param_groups": [{**sd["param_groups"][0], "lr": 0.5}]}

    opt.register_load_state_dict_pre_hook(swap_lr)
    given = opt.state_dict()
    opt.load_state_dict(given)
    assert opt.param_groups[0]["lr"] == 0.5
    assert seen[0] is not given  # a shallow copy, as torch's


def test_an_override_calling_super_runs_the_hooks_once():
    # SparseAdam's state_dict calls Optimizer.state_dict
    opt = optim.SparseAdam({"w": jnp.ones(3)})
    calls = []
    opt.register_state_dict_pre_hook(lambda o: calls.append("pre"))
    opt.register_state_dict_post_hook(lambda o, sd: calls.append("post"))
    opt.state_dict()
    assert calls == ["pre", "post"]


def test_global_hooks_see_every_optimizer_lbfgs_included():
    calls = []
    with optim.register_optimizer_step_post_hook(lambda o, a, k: calls.append(type(o).__name__)):
        lbfgs = optim.LBFGS({"w": jnp.ones(2)}, max_iter=2)
        lbfgs.step(lambda p: jnp.sum(p["w"] ** 2))
        optim.Adam({"w": jnp.ones(2)}).step({"w": jnp.ones(2)})
    assert calls == ["LBFGS", "Adam"]
