"""jaxsched.optim against torch.optim: groups, param_groups, manual writes, state dicts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxsched import optim
from tests.optim.harness import TorchTwin, flat, make_tree, random_grads, two_groups
from tests.optimizer_cases import CASES, runs
from tests.torch_reference import OPTIM_RTOL, relative_difference

O = torch.optim
STEPS = 60


def dtype_of(precision):
    return (jnp.float64, torch.float64) if precision == "float64" else (jnp.float32, torch.float32)


def build(case, engine, precision, seed=0):
    jdtype, tdtype = dtype_of(precision)
    tree = make_tree(seed)
    defaults = case.arguments(engine)
    ours = case.jaxsched_class(
        two_groups(jax.tree.map(lambda x: jnp.asarray(x, jdtype), tree), case.second), **defaults
    )
    assert {info.engine for info in ours.engine_info()} == {engine}
    theirs = TorchTwin(case.torch_class, two_groups(tree, case.second), dtype=tdtype, **defaults)
    return ours, theirs


def cast(tree, precision):
    return jax.tree.map(lambda x: jnp.asarray(x, dtype_of(precision)[0]), tree)


@pytest.mark.parametrize(("case", "engine"), runs())
def test_two_groups_match_torch_with_a_manual_lr_write(case, engine, precision):
    name = case.id
    ours, theirs = build(case, engine, precision)
    for i, g in enumerate(random_grads(1, STEPS)):
        if i == STEPS // 2:  # a hand-written lr, as recipes do, in both
            for group_ours, group_theirs in zip(
                ours.param_groups, theirs.opt.param_groups, strict=True
            ):
                group_ours["lr"] = group_theirs["lr"] = group_theirs["lr"] * 0.3
        ours.step(cast(g, precision))
        theirs.step(g)
    err = relative_difference(flat(ours.params), theirs.params())
    assert err <= OPTIM_RTOL[precision], f"{name}: {err:.3g}"


@pytest.mark.parametrize("name", sorted({c.name for c in CASES}))
def test_param_group_keys_are_torchs(name):
    tree = make_tree()
    ours = getattr(optim, name)(two_groups(tree, {"lr": 0.5}))
    theirs = TorchTwin(getattr(O, name), two_groups(tree, {"lr": 0.5}))
    for a, b in zip(ours.param_groups, theirs.opt.param_groups, strict=True):
        assert list(a.keys()) == list(b.keys())
        assert {k: a[k] for k in a if k != "params"} == {k: b[k] for k in b if k != "params"}
    assert ours.defaults == theirs.opt.defaults
    assert len(ours.param_groups[1]["params"]) == 2


@pytest.mark.parametrize(("case", "engine"), runs())
def test_state_dict_layout_round_trip_and_torch_import(case, engine, precision):
    name = case.id
    ours, theirs = build(case, engine, precision)
    grads = random_grads(2, 30)
    for g in grads[:15]:
        ours.step(cast(g, precision))
        theirs.step(g)
    sd_ours, sd_theirs = ours.state_dict(), theirs.opt.state_dict()
    # Same layout: numbering, group keys, per-parameter state names and shapes.
    assert [g["params"] for g in sd_ours["param_groups"]] == [
        g["params"] for g in sd_theirs["param_groups"]
    ]
    assert [list(g) for g in sd_ours["param_groups"]] == [
        list(g) for g in sd_theirs["param_groups"]
    ]
    assert sd_ours["state"].keys() == sd_theirs["state"].keys()
    for i, entry in sd_theirs["state"].items():
        assert list(sd_ours["state"][i]) == list(entry)
        for key, value in entry.items():
            # the exported state at the contract's tolerance (per array, norm-wise)
            ref = value.double().numpy()
            err = np.max(np.abs(np.asarray(sd_ours["state"][i][key], np.float64) - ref))
            scale = max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny)
            assert err / scale <= OPTIM_RTOL[precision], f"{name} {key}[{i}]: {err / scale:.3g}"

    # Round trip into a fresh optimizer continues bit-identically.
    twin, _ = build(case, engine, precision)
    twin.load_state_dict(sd_ours)
    twin.params = ours.params
    # A torch state dict loads too and continues with parity.
    imported, _ = build(case, engine, precision)
    imported.load_state_dict(sd_theirs)
    imported.params = cast(_torch_tree(theirs, ours.params), precision)
    for g in grads[15:]:
        ours.step(cast(g, precision))
        twin.step(cast(g, precision))
        imported.step(cast(g, precision))
        theirs.step(g)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), ours.params, twin.params))
    err = relative_difference(flat(imported.params), theirs.params())
    assert err <= OPTIM_RTOL[precision], f"{name} after torch import: {err:.3g}"


def _torch_tree(theirs, like):
    values = {k: v for k, v in theirs.params().items()}
    paths = jax.tree_util.tree_flatten_with_path(like)[0]
    return jax.tree.unflatten(
        jax.tree.structure(like), [values[jax.tree_util.keystr(p)] for p, _ in paths]
    )
