"""The transforms in optax pipelines: schedules, inject_hyperparams, chain, a real model, bf16."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler as L

import jaxsched
import jaxsched.schedules as S
from tests.torch_reference import OPTIM_RTOL, random_problem, relative_difference, torch_trajectory
from tests.transforms.harness import jax_trajectory

O = torch.optim
STEPS = 200

SCHEDULED = [
    (
        "sgd-step",
        jaxsched.sgd,
        O.SGD,
        dict(momentum=0.9, weight_decay=0.01),
        lambda: S.step_lr(0.05, 30, 0.5),
        lambda o: L.StepLR(o, 30, 0.5),
        0.05,
    ),
    (
        "adam-cosine",
        jaxsched.adam,
        O.Adam,
        dict(amsgrad=True),
        lambda: S.cosine_annealing_lr(0.01, 50, 1e-4),
        lambda o: L.CosineAnnealingLR(o, 50, 1e-4),
        0.01,
    ),
    (
        "adamw-onecycle",
        jaxsched.adamw,
        O.AdamW,
        dict(weight_decay=0.1),
        lambda: S.one_cycle_lr(0.01, total_steps=STEPS + 1),
        lambda o: L.OneCycleLR(o, 0.01, total_steps=STEPS + 1, cycle_momentum=False),
        0.01,
    ),
    (
        "rmsprop-momentum-exp",
        jaxsched.rmsprop,
        O.RMSprop,
        dict(momentum=0.9),
        lambda: S.exponential_lr(1e-3, 0.99),
        lambda o: L.ExponentialLR(o, 0.99),
        1e-3,
    ),
    (
        "nadam-linear",
        jaxsched.nadam,
        O.NAdam,
        dict(weight_decay=0.01),
        lambda: S.linear_lr(0.01, 0.1, 1.0, 40),
        lambda o: L.LinearLR(o, 0.1, 1.0, 40),
        0.01,
    ),
    (
        "adagrad-multistep",
        jaxsched.adagrad,
        O.Adagrad,
        dict(lr_decay=0.01),
        lambda: S.multistep_lr(0.1, [50, 120]),
        lambda o: L.MultiStepLR(o, [50, 120]),
        0.1,
    ),
    (
        "asgd-cyclic",
        jaxsched.asgd,
        O.ASGD,
        dict(t0=50),
        lambda: S.cyclic_lr(0.001, 0.01, 20),
        lambda o: L.CyclicLR(o, 0.001, 0.01, 20, cycle_momentum=False),
        0.001,
    ),
]


@pytest.mark.parametrize("case", SCHEDULED, ids=[c[0] for c in SCHEDULED])
def test_schedule_valued_lr_matches_torch_scheduler_stepped_every_step(case, precision):
    _, factory, cls, kwargs, ours, theirs, lr0 = case
    params, grads = random_problem(STEPS, seed=3)
    ref = torch_trajectory(cls, {**kwargs, "lr": lr0}, params, grads, precision, scheduler=theirs)
    got, _ = jax_trajectory(factory(lr=ours(), **kwargs), params, grads, precision)
    assert relative_difference(got, ref) <= OPTIM_RTOL[precision]


def test_inject_hyperparams_lr_written_every_step_without_recompiling(precision):
    """lr and weight_decay live in the optax state; changing them never recompiles."""
    params, grads = random_problem(60, seed=4)
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    tx = optax.inject_hyperparams(jaxsched.adam)(lr=0.01, betas=(0.9, 0.99), weight_decay=0.0)
    p = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    state = tx.init(p)

    @jax.jit
    def step(p, state, g):
        updates, state = tx.update(g, state, p)
        return optax.apply_updates(p, updates), state

    tensors = {
        k: torch.tensor(v, dtype=getattr(torch, precision), requires_grad=True)
        for k, v in params.items()
    }
    opt = O.Adam(list(tensors.values()), lr=0.01, betas=(0.9, 0.99))
    sizes = []
    for i, g in enumerate(grads):
        lr = 0.01 * 0.5 ** (i // 20)
        state.hyperparams["lr"] = jnp.asarray(lr, state.hyperparams["lr"].dtype)
        opt.param_groups[0]["lr"] = lr
        p, state = step(p, state, {k: jnp.asarray(v, dtype) for k, v in g.items()})
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k], dtype=t.dtype)
        opt.step()
        sizes.append(step._cache_size())
    assert sizes[-1] == sizes[0] == 1
    ref = {k: t.detach().double().numpy() for k, t in tensors.items()}
    assert (
        relative_difference({k: np.asarray(v) for k, v in p.items()}, ref) <= OPTIM_RTOL[precision]
    )


@pytest.mark.parametrize(
    "factory, kwargs",
    [
        (jaxsched.sgd, dict(lr=0.1, momentum=0.9, weight_decay=0.0)),
        (jaxsched.rmsprop, dict(lr=0.01, momentum=0.0, alpha=0.9)),
        (jaxsched.nadam, dict(lr=0.01, momentum_decay=0.004)),
        (jaxsched.asgd, dict(lr=0.01, t0=10.0)),
    ],
    ids=["sgd", "rmsprop", "nadam", "asgd"],
)
def test_inject_hyperparams_accepts_every_numeric_argument(factory, kwargs):
    params, grads = random_problem(5, seed=5)
    tx = optax.inject_hyperparams(factory)(**kwargs)
    direct, _ = jax_trajectory(factory(**kwargs), params, grads, "float32")
    injected, state = jax_trajectory(tx, params, grads, "float32")
    assert set(kwargs) <= set(state.hyperparams)
    assert relative_difference(injected, direct) <= 1e-6


def test_chain_after_clip_by_global_norm_matches_torch_clip_grad_norm(precision):
    params, grads = random_problem(100, seed=6)
    grads = [{k: 5 * v for k, v in g.items()} for g in grads]
    tx = optax.chain(optax.clip_by_global_norm(1.0), jaxsched.adamw(lr=0.01))
    got, _ = jax_trajectory(tx, params, grads, precision)

    tdtype = getattr(torch, precision)
    tensors = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}
    opt = O.AdamW(list(tensors.values()), lr=0.01)
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k], dtype=tdtype)
        # optax's rule, (g / norm) * max_norm above max_norm (torch's clip_grad_norm_ divides by
        # norm + 1e-6, a difference of the clipping functions, not of the optimizer).
        norm = torch.sqrt(sum((t.grad**2).sum() for t in tensors.values()))
        if norm >= 1.0:
            for t in tensors.values():
                t.grad = (t.grad / norm) * 1.0
        opt.step()
    ref = {k: t.detach().double().numpy() for k, t in tensors.items()}
    assert relative_difference(got, ref) <= OPTIM_RTOL[precision]


def _mlp_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 4))
    y = np.sin(x @ rng.normal(size=(4, 1)))
    params = {
        "w1": rng.normal(size=(4, 8)) * 0.5,
        "b1": np.zeros(8),
        "w2": rng.normal(size=(8, 1)) * 0.5,
        "b2": np.zeros(1),
    }
    return x, y, params


@pytest.mark.parametrize(
    "factory, cls, kwargs",
    [
        (jaxsched.sgd, O.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
        (jaxsched.adam, O.Adam, dict(lr=0.01, weight_decay=1e-3)),
        (jaxsched.rmsprop, O.RMSprop, dict(lr=0.003, momentum=0.5)),
    ],
    ids=["sgd", "adam", "rmsprop"],
)
def test_tiny_model_loss_trajectory_matches_torch(factory, cls, kwargs, precision):
    x, y, params = _mlp_data()
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    tdtype = getattr(torch, precision)

    def loss_fn(p, x, y):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

    tx = factory(**kwargs)
    p = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    state = tx.init(p)
    xj, yj = jnp.asarray(x, dtype), jnp.asarray(y, dtype)

    @jax.jit
    def train_step(p, state):
        loss, g = jax.value_and_grad(loss_fn)(p, xj, yj)
        updates, state = tx.update(g, state, p)
        return optax.apply_updates(p, updates), state, loss

    tp = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}
    opt = cls(list(tp.values()), **kwargs)
    xt, yt = torch.tensor(x, dtype=tdtype), torch.tensor(y, dtype=tdtype)
    ours, theirs = [], []
    for _ in range(100):
        p, state, loss = train_step(p, state)
        ours.append(float(loss))
        opt.zero_grad()
        tl = ((torch.tanh(xt @ tp["w1"] + tp["b1"]) @ tp["w2"] + tp["b2"] - yt) ** 2).mean()
        tl.backward()
        opt.step()
        theirs.append(float(tl.detach()))
    assert theirs[-1] < 0.5 * theirs[0]  # it trains
    tol = {"float32": 1e-4, "float64": 1e-9}[precision]
    np.testing.assert_allclose(ours, theirs, rtol=tol)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adafactor", "nadam"])
def test_bfloat16_params_keep_bfloat16_state_and_follow_torch(name):
    factory = getattr(jaxsched, name)
    cls = {
        "sgd": O.SGD,
        "adam": O.Adam,
        "adamw": O.AdamW,
        "rmsprop": O.RMSprop,
        "adafactor": O.Adafactor,
        "nadam": O.NAdam,
    }[name]
    kwargs = dict(lr=0.01, momentum=0.9) if name == "sgd" else dict(lr=0.01)
    params, grads = random_problem(50, seed=7)
    ref = torch_trajectory(cls, kwargs, params, grads, "bfloat16")
    got, state = jax_trajectory(factory(**kwargs), params, grads, "bfloat16")
    buffers = [x for x in jax.tree.leaves(state) if x.ndim > 0]
    assert buffers and all(x.dtype == jnp.bfloat16 for x in buffers)
    # bfloat16 keeps 8 significant bits (0.4% per rounding): the two runs round differently.
    assert relative_difference(got, ref) <= 5e-2


def test_updates_without_params_when_nothing_needs_them():
    tx = jaxsched.adam(lr=0.1)
    p = {"w": jnp.ones(3)}
    updates, _ = tx.update(p, tx.init(p))
    assert updates["w"].shape == (3,)
    with pytest.raises(ValueError, match=r"jaxsched.adam needs the current parameters"):
        jaxsched.adam(lr=0.1, weight_decay=0.1).update(p, tx.init(p))
