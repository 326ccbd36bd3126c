"""The registry of torch specs: each declaration agrees with the installed torch, and the
stateful layer honours what a spec declares (static arguments rebuild, numbers never do)."""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxsched import optim
from jaxsched.transforms._common import value_at
from jaxsched.transforms._registry import SPECS, kernel_entries
from jaxsched.transforms._spec import TorchSpec
from tests.compile_counter import count_compiles


@pytest.mark.parametrize("name", sorted(SPECS))
def test_class_signature_and_keys_are_torchs(name):
    spec = SPECS[name]
    cls, theirs = getattr(optim, name), getattr(torch.optim, name)
    assert cls.spec is spec
    # torch's signature, then our keyword-only options (Muon's orientation)
    ours_sig = [
        p for p in inspect.signature(cls.__init__).parameters.values() if p.name not in spec.options
    ]
    for name in spec.options:
        assert (
            inspect.signature(cls.__init__).parameters[name].kind == inspect.Parameter.KEYWORD_ONLY
        )
    torch_sig = inspect.signature(theirs.__init__).parameters.values()
    assert [(p.name, p.kind, p.default) for p in ours_sig] == [
        (p.name, p.kind, p.default) for p in torch_sig
    ]
    torch_keys = list(theirs([torch.zeros(2, 2, requires_grad=True)]).param_groups[0])[1:]
    assert spec.keys == tuple(torch_keys)
    # every key is an argument of the class or fixed by it, never both
    arguments = {p.name for p in ours_sig} - {"self", "params"}
    assert set(spec.keys) == arguments | set(spec.fixed)
    assert not arguments & set(spec.fixed)
    # the factory takes only torch's keys, and every numeric default matches the class's
    factory = inspect.signature(spec.factory).parameters
    assert set(factory) <= set(spec.keys) | set(spec.options)
    for p in ours_sig:
        if p.name in factory:
            assert factory[p.name].default == p.default, p.name


def test_kernel_adapters_agree_on_their_entry_points():
    entries = kernel_entries()
    assert set(entries) == {"sgd", "adam"}
    assert {s.name for s in SPECS.values() if s.kernel is not None} == {"SGD", "Adam", "AdamW"}


class _RepeatState(NamedTuple):
    count: jax.Array  # every state carries torch's step count


def _repeat(lr: float = 0.1, times: int = 2) -> optax.GradientTransformation:
    """A rule with a loop count: ``times`` must be a Python int (a traced one fails)."""

    def init(params):
        return _RepeatState(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        rate = value_at(lr, jnp.zeros((), jnp.int32))  # a float, array or SplitFloat
        for _ in range(times):
            updates = jax.tree.map(lambda u: -rate * u, updates)
        return updates, _RepeatState(state.count + 1)

    return optax.GradientTransformation(init, update)


class _Repeat(optim.Optimizer):
    """An optimizer declared by a spec alone, with a static (structural) number."""

    spec = TorchSpec(
        name="Repeat",
        factory=_repeat,
        keys=("lr", "times"),
        static_args=frozenset({"times"}),
        step_entry=False,
    )

    def __init__(self, params: Any, lr: float = 0.1, times: int = 2) -> None:
        super().__init__(params, self._arguments(locals()))


def test_a_static_argument_rebuilds_and_a_numeric_one_does_not():
    opt = _Repeat({"w": jnp.ones(3)}, lr=0.5, times=3)
    grads = {"w": jnp.ones(3)}
    np.testing.assert_allclose(opt.step(grads)["w"], 1 - 0.5**3)
    with count_compiles() as compiles:
        opt.param_groups[0]["lr"] = 0.25
        np.testing.assert_allclose(opt.step(grads)["w"], 1 - 0.5**3 - 0.25**3)
    assert compiles() == 0  # a number travels in the vector
    opt.param_groups[0]["times"] = 2  # structural: the next step rebuilds
    np.testing.assert_allclose(opt.step(grads)["w"], 1 - 0.5**3 - 0.25**3 + 0.25**2)
    assert opt.state_dict()["param_groups"][0]["times"] == 2
    assert opt.engine_info()[0].engine == "xla"
