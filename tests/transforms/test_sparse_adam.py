"""SparseAdam against torch.optim.SparseAdam on an nn.Embedding(sparse=True) model: the
functional transform and the stateful class, row-sparse and element-sparse gradients,
duplicates, empty gradients, maximize, torch's errors and state dicts both ways."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from jax.experimental import sparse

import jaxsched
from jaxsched import optim
from tests.compile_counter import count_compiles
from tests.torch_reference import OPTIM_RTOL, relative_difference

V, D, STEPS = 12, 3, 40
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def _batches(seed=0, size=6, empty_at=(7,)):
    """Token ids per step (repeats included); the steps in ``empty_at`` look nothing up."""
    rng = np.random.default_rng(seed)
    return [np.zeros(0, np.int64) if i in empty_at else rng.integers(0, V, size=size)
            for i in range(STEPS)]  # fmt: skip


TARGET = np.random.default_rng(3).normal(size=(6, D))
W0 = np.random.default_rng(4).normal(size=(V, D))


def torch_embedding_run(kwargs, precision, batches):
    dtype = TORCH_DTYPE[precision]
    emb = torch.nn.Embedding(V, D, sparse=True, dtype=dtype)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(W0, dtype=dtype))
    opt = torch.optim.SparseAdam(emb.parameters(), **kwargs)
    for ids in batches:
        opt.zero_grad()
        out = emb(torch.tensor(ids))
        loss = ((out - torch.tensor(TARGET[: len(ids)], dtype=dtype)) ** 2).sum()
        loss.backward()
        opt.step()
    return emb.weight.detach().double().numpy(), opt


def embedding_grad(table, ids):
    """The lookup's gradient as torch's nn.Embedding(sparse=True) makes it: one stored row
    per looked-up id (repeats included, summed by the optimizer)."""
    rows = table[ids]
    row_grads = jax.grad(lambda r: jnp.sum((r - TARGET[: len(ids)].astype(r.dtype)) ** 2))(rows)
    return sparse.BCOO((row_grads, jnp.asarray(ids, jnp.int32)[:, None]), shape=table.shape)


KWARGS = {
    "defaults": {},
    "tuned": dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6),
    "maximize": dict(lr=0.01, maximize=True),
}


@pytest.mark.parametrize("config", sorted(KWARGS))
def test_stateful_matches_torch_embedding(config, precision):
    batches = _batches()
    theirs, _ = torch_embedding_run(KWARGS[config], precision, batches)
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    opt = optim.SparseAdam({"emb": jnp.asarray(W0, dtype)}, **KWARGS[config])
    for ids in batches:
        opt.step({"emb": embedding_grad(opt.params["emb"], ids)})
    err = relative_difference({"emb": np.asarray(opt.params["emb"])}, {"emb": theirs})
    assert err <= OPTIM_RTOL[precision], err


def test_functional_matches_torch_and_leaves_absent_rows_alone(x64):
    batches = _batches(empty_at=())
    theirs, _ = torch_embedding_run({"lr": 0.02}, "float64", batches)
    tx = jaxsched.sparse_adam(lr=0.02)
    params = {"emb": jnp.asarray(W0)}
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    before = np.asarray(params["emb"])
    untouched = np.setdiff1d(np.arange(V), np.concatenate(batches))
    for ids in batches:
        params, state = step(params, state, {"emb": embedding_grad(params["emb"], ids)})
    assert relative_difference({"emb": np.asarray(params["emb"])}, {"emb": theirs}) <= 1e-10
    np.testing.assert_array_equal(np.asarray(params["emb"])[untouched], before[untouched])
    np.testing.assert_array_equal(np.asarray(state.exp_avg["emb"])[untouched], 0.0)


def test_element_sparse_gradient_matches_torch(x64):
    """A gradient sparse in both dimensions (torch: a plain sparse COO tensor)."""
    rng = np.random.default_rng(5)
    p0 = rng.normal(size=(5, 4))
    t = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.SparseAdam([t], lr=0.03, betas=(0.7, 0.9))
    opt = optim.SparseAdam({"w": jnp.asarray(p0)}, lr=0.03, betas=(0.7, 0.9))
    for _ in range(15):
        idx = np.stack([rng.integers(0, 5, 7), rng.integers(0, 4, 7)])  # with repeats
        val = rng.normal(size=7)
        t.grad = torch.sparse_coo_tensor(torch.tensor(idx), torch.tensor(val), (5, 4))
        topt.step()
        opt.step({"w": sparse.BCOO((jnp.asarray(val), jnp.asarray(idx.T)), shape=(5, 4))})
    assert relative_difference({"w": np.asarray(opt.params["w"])},
                               {"w": t.detach().numpy()}) <= 1e-10  # fmt: skip


def test_state_dict_both_ways(x64):
    batches = _batches()
    _, topt = torch_embedding_run({"lr": 0.02}, "float64", batches[:10])
    opt = optim.SparseAdam({"emb": jnp.asarray(W0)}, lr=0.02)
    for ids in batches[:10]:
        opt.step({"emb": embedding_grad(opt.params["emb"], ids)})
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert ours["param_groups"][0].pop("param_names") == ["emb"]  # torch's: "weight", unnamed
    assert ours["param_groups"] == theirs["param_groups"]
    assert list(ours["state"][0]) == list(theirs["state"][0])
    assert ours["state"][0]["step"] == theirs["state"][0]["step"] == 10
    assert isinstance(ours["state"][0]["step"], int)  # torch keeps a Python int here
    for key in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_allclose(ours["state"][0][key], theirs["state"][0][key].numpy(),
                                   rtol=1e-12, atol=1e-15)  # fmt: skip
    resumed = optim.SparseAdam({"emb": jnp.asarray(W0)}, lr=0.5)
    resumed.params = opt.params
    resumed.load_state_dict(theirs)
    assert resumed.param_groups[0]["lr"] == 0.02
    for ids in batches[10:]:
        g = {"emb": embedding_grad(opt.params["emb"], ids)}
        opt.step(g)
        resumed.step(g)
    np.testing.assert_array_equal(np.asarray(resumed.params["emb"]), np.asarray(opt.params["emb"]))


def test_errors_are_torchs():
    params = {"emb": jnp.ones((3, 2))}
    with pytest.raises(ValueError, match=r"Invalid learning rate: 0\.0"):
        optim.SparseAdam(params, lr=0.0)  # torch: lr must be > 0 here
    with pytest.raises(ValueError, match=r"Invalid epsilon value: 0\.0"):
        optim.SparseAdam(params, eps=0.0)
    with pytest.raises(ValueError, match=r"Invalid beta parameter at index 1: 1\.0"):
        optim.SparseAdam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        optim.SparseAdam(params, lr=jnp.ones(2))
    opt = optim.SparseAdam(params)
    with pytest.raises(
        RuntimeError, match="does not support dense gradients, please consider Adam"
    ):
        opt.step({"emb": jnp.ones((3, 2))})
    bad = sparse.BCOO((jnp.ones((1, 2)), jnp.zeros((1, 1), jnp.int32)), shape=(4, 2))
    with pytest.raises(ValueError, match="grads do not match"):
        opt.step({"emb": bad})
    np.testing.assert_array_equal(np.asarray(opt.params["emb"]), 1.0)  # nothing applied


def test_lr_changes_never_recompile():
    opt = optim.SparseAdam({"emb": jnp.asarray(W0, jnp.float32)})
    grads = [
        {"emb": embedding_grad(opt.params["emb"], np.array(ids))} for ids in ([1, 2, 2], [0, 5, 9])
    ]
    opt.step(grads[0])
    with count_compiles() as compiles:
        for lr, g in zip((1e-2, 3e-3), grads, strict=True):
            opt.param_groups[0]["lr"] = lr
            opt.step(g)
    assert compiles() == 0
