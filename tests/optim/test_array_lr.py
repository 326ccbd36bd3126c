"""A float32 array lr is torch's float32 tensor lr: its derived scalars in float32 (``1 - lr *
wd``, ``lr / (1 - beta1^t)``, Adagrad's and Adamax's ``clr``, NAdam's coefficients, Muon's
adjusted lr, ASGD's eta, Adafactor's step size and decay), also for float64 parameters; a Python
float keeps double arithmetic.  Functional (every optimizer), stateful (written mid-run too) and
imported from torch."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxsched
from jaxsched import optim
from tests.torch_reference import relative_difference
from tests.transforms.harness import jax_trajectory

P0 = np.random.default_rng(0).normal(size=(4, 3))
GRADS = [np.random.default_rng(i + 1).normal(size=(4, 3)) for i in range(60)]
CASES = {
    "adamw": (torch.optim.AdamW, jaxsched.adamw, optim.AdamW, dict(weight_decay=0.1)),
    "adam-amsgrad": (torch.optim.Adam, jaxsched.adam, optim.Adam, dict(amsgrad=True)),
    "adam-decoupled": (torch.optim.Adam, jaxsched.adam, optim.Adam,
                       dict(weight_decay=0.1, decoupled_weight_decay=True)),
}  # fmt: skip


def torch_run(cls, lr, kwargs, grads=GRADS):
    t = torch.tensor(P0, requires_grad=True)
    opt = cls([t], lr=lr, **kwargs)
    for g in grads:
        t.grad = torch.tensor(g)
        opt.step()
    return {"w": t.detach().numpy()}, opt


O = torch.optim
FUNCTIONAL = {
    **{name: (cls, factory, kwargs) for name, (cls, factory, _, kwargs) in CASES.items()},
    "adam-l2": (O.Adam, jaxsched.adam, dict(weight_decay=0.1)),
    "sgd": (O.SGD, jaxsched.sgd, dict(momentum=0.9, weight_decay=0.1)),
    "adagrad": (O.Adagrad, jaxsched.adagrad, dict(lr_decay=0.01, weight_decay=0.1)),
    "adadelta": (O.Adadelta, jaxsched.adadelta, dict(weight_decay=0.1)),
    "adamax": (O.Adamax, jaxsched.adamax, dict(weight_decay=0.1)),
    "nadam": (O.NAdam, jaxsched.nadam, dict(weight_decay=0.1, decoupled_weight_decay=True)),
    "nadam-l2": (O.NAdam, jaxsched.nadam, dict(weight_decay=0.1)),
    "radam": (O.RAdam, jaxsched.radam, dict(weight_decay=0.1, decoupled_weight_decay=True)),
    "rmsprop": (O.RMSprop, jaxsched.rmsprop, dict(weight_decay=0.1, momentum=0.9)),
    "rprop": (O.Rprop, jaxsched.rprop, dict()),
    "asgd": (O.ASGD, jaxsched.asgd, dict(t0=5, lambd=1e-2, weight_decay=0.1)),
    "adafactor": (O.Adafactor, jaxsched.adafactor, dict(weight_decay=0.1)),
    "muon": (O.Muon, functools.partial(jaxsched.muon, orientation="torch"), dict()),
}


@pytest.mark.parametrize("case", sorted(FUNCTIONAL))
def test_functional_float32_lr_is_torchs_tensor_lr(case, x64):
    cls, factory, kwargs = FUNCTIONAL[case]
    tensor_lr, float_lr = (
        torch_run(cls, torch.tensor(1e-3), kwargs)[0],
        torch_run(cls, 1e-3, kwargs)[0],
    )
    if case not in ("adadelta", "rprop"):  # torch: the two differ (4e-10 .. 3e-6)
        assert relative_difference(tensor_lr, float_lr) > 1e-10

    def ours(lr):
        tx = factory(lr=lr, **kwargs)
        return jax_trajectory(tx, {"w": P0}, [{"w": g} for g in GRADS], "float64")[0]

    assert relative_difference(ours(jnp.float32(1e-3)), tensor_lr) <= 1e-13
    assert relative_difference(ours(np.float32(1e-3)), tensor_lr) <= 1e-13
    assert relative_difference(ours(1e-3), float_lr) <= 1e-13


@pytest.mark.parametrize("case", sorted(CASES))
def test_stateful_float32_lr_written_and_loaded(case, x64):
    cls, _, jcls, kwargs = CASES[case]
    theirs, topt = torch_run(cls, torch.tensor(1e-3), kwargs, GRADS[:30])
    opt = jcls({"w": jnp.asarray(P0)}, lr=1e-3, **kwargs)
    assert opt.engine_info()[0].engine == "kernel"
    for i, g in enumerate(GRADS[:30]):
        if i == 10:  # a float lr for 10 steps, then torch's tensor lr: a rebuild, state kept
            opt.param_groups[0]["lr"] = jnp.float32(1e-3)
        opt.step({"w": jnp.asarray(g)})
    info = opt.engine_info()[0]
    assert info.engine == "xla" and "float32 array" in info.reason
    mixed = torch_run(cls, 1e-3, kwargs, GRADS[:10])[1]
    mixed.param_groups[0]["lr"] = torch.tensor(1e-3)
    t = mixed.param_groups[0]["params"][0]
    for g in GRADS[10:30]:
        t.grad = torch.tensor(g)
        mixed.step()
    assert (
        relative_difference({"w": np.asarray(opt.params["w"])}, {"w": t.detach().numpy()}) <= 1e-13
    )

    # torch's state dict with a tensor lr continues here with float32 arithmetic
    resumed = jcls({"w": jnp.asarray(theirs["w"])}, lr=0.5, **kwargs)
    resumed.load_state_dict(topt.state_dict())
    lr = resumed.param_groups[0]["lr"]
    assert np.asarray(lr).dtype == np.float32 and float(lr) == float(np.float32(1e-3))
    w = topt.param_groups[0]["params"][0]
    for g in GRADS[30:]:
        w.grad = torch.tensor(g)
        topt.step()
        resumed.step({"w": jnp.asarray(g)})
    assert (
        relative_difference({"w": np.asarray(resumed.params["w"])}, {"w": w.detach().numpy()})
        <= 1e-13
    )


def test_schedulers_keep_an_array_lr_an_array_as_torch_keeps_a_tensor(x64):
    from jaxsched.optim import lr_scheduler

    t = torch.tensor(P0, requires_grad=True)
    topt = torch.optim.AdamW([t], lr=torch.tensor(1e-3), weight_decay=0.1)
    tsched = torch.optim.lr_scheduler.StepLR(topt, 2, 0.5)
    opt = optim.AdamW({"w": jnp.asarray(P0)}, lr=jnp.float32(1e-3), weight_decay=0.1)
    sched = lr_scheduler.StepLR(opt, 2, 0.5)
    assert isinstance(tsched.base_lrs[0], torch.Tensor)
    assert np.asarray(sched.base_lrs[0]).dtype == np.float32  # an array, as torch's tensor
    for g in GRADS[:7]:
        t.grad = torch.tensor(g)
        topt.step()
        tsched.step()
        opt.step({"w": jnp.asarray(g)})
        sched.step()
        assert [float(x) for x in sched.get_last_lr()] == [float(x) for x in tsched.get_last_lr()]
    assert (
        relative_difference({"w": np.asarray(opt.params["w"])}, {"w": t.detach().numpy()}) <= 1e-13
    )
