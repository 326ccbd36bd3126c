"""``param_names``: written by ``state_dict()`` (the tree paths, dotted), used by
``load_state_dict`` to put each saved entry on the parameter of the same name; a torch state dict
without names is read by position only where that cannot swap two parameters' state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxsched import optim

# ten square layers: every kernel has the same shape, so a load by position that follows
# another order puts each buffer on the wrong layer without any shape error
LAYERS = [f"layer{i}" for i in range(10)]


def _tree(seed=0):
    rng = np.random.default_rng(seed)
    return {name: {"kernel": rng.normal(size=(4, 4))} for name in LAYERS}


def _grads(step):
    return _tree(100 + step)


def _torch_twin(named: bool, order: list[str]):
    tensors = {name: torch.tensor(_tree()[name]["kernel"], requires_grad=True) for name in order}
    params = [(f"{n}.kernel", t) for n, t in tensors.items()] if named else list(tensors.values())
    opt = torch.optim.Adam(params, lr=0.01)
    for step in range(3):
        for name, t in tensors.items():
            t.grad = torch.tensor(_grads(step)[name]["kernel"])
        opt.step()
    return opt, tensors


def test_state_dict_names_every_parameter(x64):
    opt = optim.Adam(_tree(), lr=0.01)
    assert opt.state_dict()["param_groups"][0]["param_names"] == [f"{n}.kernel" for n in LAYERS]
    assert opt.param_groups[0]["param_names"] == [f"{n}.kernel" for n in LAYERS]


def test_a_named_torch_state_dict_loads_by_name_whatever_its_order(x64):
    order = LAYERS[::-1]  # torch registered the layers in another order than the tree's
    theirs, tensors = _torch_twin(named=True, order=order)
    opt = optim.Adam(_tree(), lr=0.01)
    opt.load_state_dict(theirs.state_dict())
    opt.params = {n: {"kernel": jnp.asarray(tensors[n].detach().numpy())} for n in LAYERS}
    for name, t in tensors.items():
        t.grad = torch.tensor(_grads(3)[name]["kernel"])
    theirs.step()
    opt.step(_grads(3))
    for name in LAYERS:
        np.testing.assert_allclose(
            opt.params[name]["kernel"], tensors[name].detach().numpy(), rtol=1e-13
        )
    saved = opt.state_dict()  # our order again, names with it
    assert saved["param_groups"][0]["param_names"] == [f"{n}.kernel" for n in LAYERS]


def test_an_unnamed_torch_state_dict_of_same_shaped_parameters_is_refused():
    theirs, _ = _torch_twin(named=False, order=LAYERS[::-1])
    opt = optim.Adam(_tree(), lr=0.01)
    before = jax.tree.map(np.asarray, opt.opt_state)
    with pytest.raises(ValueError, match=r"no param_names .* several parameters of shape \(4, 4\)"):
        opt.load_state_dict(theirs.state_dict())
    after = jax.tree.map(np.asarray, opt.opt_state)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.all(a == b)), before, after))


def test_other_names_are_refused_and_named():
    theirs, _ = _torch_twin(named=True, order=LAYERS)
    sd = theirs.state_dict()
    sd["param_groups"][0]["param_names"][0] = "conv.weight"
    opt = optim.Adam(_tree(), lr=0.01)
    with pytest.raises(
        ValueError, match=r"missing \['layer0.kernel'\], unexpected \['conv.weight'\]"
    ):
        opt.load_state_dict(sd)


def test_an_unnamed_state_dict_without_state_loads_by_position():
    # SGD without momentum keeps no state: nothing to misplace
    theirs = torch.optim.SGD([torch.zeros(4, 4, requires_grad=True) for _ in LAYERS], lr=0.5)
    opt = optim.SGD(_tree(), lr=0.1)
    opt.load_state_dict(theirs.state_dict())
    assert opt.param_groups[0]["lr"] == 0.5


def test_named_pairs_as_torchs_named_parameters(x64):
    pairs = [(f"{n}.kernel", jnp.asarray(_tree()[n]["kernel"])) for n in LAYERS]
    opt = optim.Adam(pairs, lr=0.01)
    assert opt.param_groups[0]["param_names"] == [f"{n}.kernel" for n in LAYERS]
    assert jax.tree.structure(opt.params) == jax.tree.structure(_tree())
    grouped = optim.SGD([{"params": pairs[:5]}, {"params": pairs[5:], "lr": 0.5}], lr=0.1)
    assert grouped.param_groups[1]["param_names"] == [f"{n}.kernel" for n in LAYERS[5:]]
    with pytest.raises(ValueError, match="Some param names are missing"):
        optim.SGD([pairs[0], jnp.ones(2)], lr=0.1)
