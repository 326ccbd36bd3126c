"""Muon against torch.optim.Muon: the bfloat16 Newton-Schulz iteration bit for bit, the
trajectory in both orientations, the stateful class, its state dict, errors, Muon + AdamW."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newton_schulz

import jaxsched
from jaxsched import optim
from jaxsched.transforms._muon import newton_schulz
from tests.compile_counter import count_compiles
from tests.torch_reference import relative_difference

SHAPES = {"tall": (6, 4), "wide": (4, 6), "square": (5, 5)}
# The iteration is torch's bit for bit while the float32 sums inside its matrix products add in
# torch's order; XLA's order can differ from torch's BLAS, and where that moves a sum across a
# bfloat16 rounding boundary one entry of the update differs by one bfloat16 ulp (2^-8
# relative, times lr).  Measured over these cases: 1e-15 (float64) / 4e-7 (float32) without a
# flip, 1.1e-4 with one.  A wrong rule (lerp, nesterov, lr adjustment, decay) is >= 1e-2 off.
MUON_RTOL = 3e-4
STEPS = 30
CASES = [
    ("defaults", dict(lr=0.02)),
    ("no-nesterov", dict(lr=0.02, nesterov=False, momentum=0.9)),
    ("match-rms-adamw", dict(lr=0.01, adjust_lr_fn="match_rms_adamw", weight_decay=0.0)),
    (
        "original-3-steps",
        dict(
            lr=0.05, adjust_lr_fn="original", ns_steps=3, ns_coefficients=(3.0, -3.2, 1.2), eps=1e-5
        ),
    ),
]


def problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def torch_run(kwargs, params, grads, precision):
    dtype = getattr(torch, precision)
    # in jax's flatten order (sorted keys), so that torch numbers the parameters as we do
    tensors = {k: torch.tensor(params[k], dtype=dtype, requires_grad=True) for k in sorted(params)}
    opt = torch.optim.Muon(list(tensors.items()), **kwargs)  # named: param_names
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k], dtype=dtype)
        opt.step()
    return {k: t.detach().double().numpy() for k, t in tensors.items()}, opt


def oriented(tree, orientation):
    return tree if orientation == "torch" else {k: np.asarray(v).T for k, v in tree.items()}


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5), (1, 7), (16, 3)])
@pytest.mark.parametrize("source", ["float32", "float64"])
def test_newton_schulz_is_torchs_bit_for_bit(shape, source, x64):
    g = np.random.default_rng(sum(shape)).normal(size=shape).astype(source)
    theirs = torch_newton_schulz(torch.tensor(g), (3.4445, -4.775, 2.0315), 5, 1e-7)
    ours = jax.jit(lambda m: newton_schulz(m, (3.4445, -4.775, 2.0315), 5, 1e-7))(g)
    np.testing.assert_array_equal(np.asarray(ours), theirs.float().numpy())


@pytest.mark.parametrize("orientation", ["flax", "torch"])
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_trajectory_matches_torch(name, kwargs, orientation, precision):
    params, grads = problem()
    ref, _ = torch_run(kwargs, params, grads, precision)
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    tx = jaxsched.muon(**kwargs, orientation=orientation)
    p = jax.tree.map(lambda x: jnp.asarray(x, dtype), oriented(params, orientation))
    state = tx.init(p)

    @jax.jit
    def step(p, state, g):
        updates, state = tx.update(g, state, p)
        return optax.apply_updates(p, updates), state

    for g in grads:
        p, state = step(
            p, state, jax.tree.map(lambda x: jnp.asarray(x, dtype), oriented(g, orientation))
        )
    ours = oriented(jax.tree.map(lambda x: np.asarray(x, np.float64), p), orientation)
    err = relative_difference(ours, ref)
    assert err <= MUON_RTOL, f"{name} {orientation}: {err:.3g}"


def test_stateful_muon_state_dict_and_torch_import(x64):
    params, grads = problem(1)
    kwargs = dict(lr=0.02, weight_decay=0.05)
    ref, theirs = torch_run(kwargs, params, grads[:10], "float64")
    opt = optim.Muon(oriented(params, "flax"), **kwargs)  # flax kernels, the default
    for g in grads[:10]:
        opt.step(oriented(g, "flax"))
    assert relative_difference(oriented(opt.params, "flax"), ref) <= MUON_RTOL
    ours_sd, torch_sd = opt.state_dict(), theirs.state_dict()
    assert [list(g) for g in ours_sd["param_groups"]] == [list(g) for g in torch_sd["param_groups"]]
    assert {i: list(e) for i, e in ours_sd["state"].items()} == {
        i: list(e) for i, e in torch_sd["state"].items()
    }  # momentum_buffer only: torch's Muon keeps no step
    # a torch state dict (torch-oriented buffers) continues with torch in the torch orientation
    imported = optim.Muon({k: jnp.asarray(v) for k, v in ref.items()}, orientation="torch",
                          **kwargs)  # fmt: skip
    imported.load_state_dict(torch_sd)
    ref_end, _ = torch_run(kwargs, params, grads, "float64")
    for g in grads[10:]:
        imported.step(g)
    assert relative_difference(imported.params, ref_end) <= MUON_RTOL
    # numbers are traced, the loop count is static
    with count_compiles() as compiles:
        imported.param_groups[0]["lr"] = 0.01
        imported.step(grads[0])
    assert compiles() == 0
    imported.param_groups[0]["ns_steps"] = 2  # rebuilds, keeps the state
    imported.step(grads[1])
    assert imported.state_dict()["param_groups"][0]["ns_steps"] == 2


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [
        (lambda: jaxsched.muon(lr=-1.0), ValueError, "Learning rate should be >= 0 but is: -1.0"),
        (lambda: jaxsched.muon(momentum=-0.5), ValueError, "momentum should be >= 0 but is"),
        (lambda: jaxsched.muon(weight_decay=-1), ValueError, "weight decay should be >= 0"),
        (lambda: jaxsched.muon(adjust_lr_fn="x"), ValueError, "function x is not supported"),
        (lambda: jaxsched.muon(ns_steps=100), ValueError, "must be less than 100"),
        (lambda: jaxsched.muon(ns_coefficients=(1.0, 2.0)), ValueError, "exactly 3 values"),
        (lambda: jaxsched.muon(ns_steps=2.5), TypeError, "ns_steps must be a non-negative int"),
        (lambda: jaxsched.muon(orientation="tf"), ValueError, "orientation must be"),
        (
            lambda: optim.Muon({"b": jnp.ones(3)}),
            ValueError,
            r"only supports 2D parameters .* size: torch.Size\(\[3\]\)",
        ),
    ],
)
def test_errors_name_the_argument(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_muon_for_matrices_and_adamw_for_the_rest_in_one_transform(x64):
    """The usual recipe as one line: torch's two optimizers, here one grouped transform."""
    rng = np.random.default_rng(5)
    params = {"hidden": rng.normal(size=(4, 6)), "bias": rng.normal(size=(6,))}
    grads = [{k: rng.normal(size=np.shape(v)) for k, v in params.items()} for _ in range(10)]
    tx = jaxsched.grouped(
        {"muon": jaxsched.muon, "adamw": jaxsched.adamw},
        lambda p: jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adamw", p),
        {"muon": {"lr": 0.02}, "adamw": {"lr": 3e-3, "weight_decay": 0.01}},
    )
    p = jax.tree.map(jnp.asarray, params)
    state = tx.init(p)
    step = jax.jit(
        lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(g, s, p))
    )
    for g in grads:
        p, state = step(p, state, jax.tree.map(jnp.asarray, g))
    w = torch.tensor(params["hidden"].T, requires_grad=True)  # torch's (out, in)
    b = torch.tensor(params["bias"], requires_grad=True)
    muon, adamw = torch.optim.Muon([w], lr=0.02), torch.optim.AdamW([b], lr=3e-3, weight_decay=0.01)
    for g in grads:
        w.grad, b.grad = torch.tensor(g["hidden"].T), torch.tensor(g["bias"])
        muon.step()
        adamw.step()
    ref = {"hidden": w.detach().numpy().T, "bias": b.detach().numpy()}
    assert relative_difference(jax.tree.map(np.asarray, p), ref) <= MUON_RTOL
