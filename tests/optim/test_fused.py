"""The CPU fast path (``jaxsched.optim._fused``): taken by default where it applies, same numbers
as the XLA path and as torch, same state layout outside, no recompiles, clean fallbacks."""

from __future__ import annotations

import ctypes
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxsched import optim
from jaxsched.optim import _fused
from tests.compile_counter import count_compiles
from tests.optim.harness import TorchTwin

# A leaf above the kernels' threading threshold (2**16 elements) next to small ones.
SHAPES = {"big": {"w": (300, 250)}, "small": {"w": (3, 5), "b": (5,)}}

CASES = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    (optim.Adam, dict(lr=1e-2)),
    (optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    (optim.Adam, dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    (optim.AdamW, dict(lr=1e-2)),
    (optim.AdamW, dict(lr=1e-2, weight_decay=0.05, amsgrad=True)),
]
IDS = [f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw in CASES]


def make(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.standard_normal(s), dtype),
        SHAPES,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def groups(tree, fused=None):
    extra = {} if fused is None else {"fused": fused}
    return [
        {"params": {"big": tree["big"]}, **extra},
        {"params": {"small": tree["small"]}, "lr": 0.05, **extra},
    ]


def engines(opt):
    """The engines the optimizer's groups run on."""
    return {info.engine for info in opt.engine_info()}


def grads_at(step, tree):
    rng = np.random.default_rng(1000 + step)
    return jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), tree)


def test_kernels_are_built_and_taken_by_default():
    assert _fused.kernels_available(), "the CPU kernels did not build or load"
    tree = make(jnp.float32)
    for cls in (optim.SGD, optim.Adam, optim.AdamW):
        assert engines(cls(groups(tree), lr=0.1)) == {"kernel"}
        assert engines(cls(groups(tree, fused=False), lr=0.1)) == {"xla"}


@pytest.mark.parametrize(("cls", "kwargs"), CASES, ids=IDS)
def test_fast_path_matches_xla_path_and_torch(cls, kwargs, precision):
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    tree = make(dtype)
    fast, slow = cls(groups(tree), **kwargs), cls(groups(tree, fused=False), **kwargs)
    assert engines(fast) == {"kernel"} and engines(slow) == {"xla"}
    twin = TorchTwin(
        getattr(torch.optim, cls.__name__),
        groups(jax.tree.map(np.asarray, tree)),
        dtype=torch.float64 if dtype == jnp.float64 else torch.float32,
        **kwargs,
    )
    for step in range(12):
        if step == 6:  # a scheduler-like write, and weight decay switched on in one group
            for opt in (fast, slow, twin.opt):
                opt.param_groups[0]["lr"] *= 0.5
                opt.param_groups[1]["weight_decay"] = 0.02
        g = grads_at(step, tree)
        p_fast, p_slow = fast.step(g), slow.step(g)
        twin.step(g)
    rtol = 1e-12 if dtype == jnp.float64 else 2e-6
    for a, b in zip(jax.tree.leaves(p_fast), jax.tree.leaves(p_slow), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol)
    for a, b in zip(jax.tree.leaves(fast.opt_state), jax.tree.leaves(slow.opt_state), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol)
    torch_params = [t.detach().numpy() for t in twin.tensors.values()]
    ours = [
        np.asarray(x) for x in jax.tree.leaves({"big": p_fast["big"], "small": p_fast["small"]})
    ]
    tol = 1e-10 if dtype == jnp.float64 else 1e-5
    for a, b in zip(ours, torch_params, strict=True):
        assert np.max(np.abs(a - b)) <= tol * max(1.0, float(np.max(np.abs(b))))


def test_state_dict_moves_between_paths(x64):
    tree = make(jnp.float64)
    fast = optim.Adam(groups(tree), lr=1e-2, amsgrad=True)
    for step in range(3):
        fast.step(grads_at(step, tree))
    slow = optim.Adam(groups(tree, fused=False), lr=1e-2, amsgrad=True)
    slow.load_state_dict(fast.state_dict())
    slow.params = fast.params
    back = optim.Adam(groups(tree), lr=1e-2, amsgrad=True)
    back.load_state_dict(slow.state_dict())
    back.params = slow.params
    for step in range(3, 6):
        g = grads_at(step, tree)
        a, b, c = fast.step(g), slow.step(g), back.step(g)
    for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(z))


def test_switching_fused_off_mid_run_keeps_the_state(x64):
    tree = make(jnp.float64)
    a, b = (
        optim.SGD(groups(tree), lr=0.1, momentum=0.9),
        optim.SGD(groups(tree, fused=False), lr=0.1, momentum=0.9),
    )
    for step in range(3):
        a.step(grads_at(step, tree))
        b.step(grads_at(step, tree))
    for pg in a.param_groups:
        pg["fused"] = False
    for step in range(3, 5):
        pa, pb = a.step(grads_at(step, tree)), b.step(grads_at(step, tree))
    assert "kernel" not in engines(a)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-12, atol=1e-12)


def test_no_recompiles_when_hyperparameters_change():
    tree = make(jnp.float32)
    opt = optim.AdamW(groups(tree), lr=1e-3)
    opt.step(grads_at(0, tree))
    g = grads_at(1, tree)
    with count_compiles() as compiles:
        for step in range(5):
            opt.param_groups[0]["lr"] = 1e-3 / (step + 1)
            opt.param_groups[1]["betas"] = (0.9 - 0.01 * step, 0.999)
            opt.param_groups[1]["weight_decay"] = 0.0 if step % 2 else 0.1
            opt.step(g)
        jax.block_until_ready(opt.params)
    assert compiles() == 0


def test_two_optimizers_dispatched_back_to_back():
    """Two kernels in flight at once (asynchronous dispatch) complete: the caller takes parts of
    its own work when no pool thread is free."""
    tree = make(jnp.float32)
    a, b = optim.Adam(groups(tree), lr=1e-3), optim.SGD(groups(tree), lr=0.1, momentum=0.9)
    for step in range(4):
        a.step(grads_at(step, tree))
        b.step(grads_at(step, tree))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves((a.params, b.params)))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(
            lambda t: optim.Adagrad(groups(t), lr=0.1), ["xla", "xla"], id="not-sgd-or-adam"
        ),
        pytest.param(
            lambda t: optim.Adam(
                [
                    {"params": {"big": t["big"]}},
                    {
                        "params": {
                            "small": jax.tree.map(lambda x: x.astype(jnp.bfloat16), t["small"])
                        }
                    },
                ]
            ),
            ["kernel", "xla"],  # engines are chosen per group
            id="bfloat16-group",
        ),
        pytest.param(
            lambda t: optim.SGD(
                {"a": t["big"]["w"], "b": t["small"]["b"].astype(jnp.float16)}, lr=0.1
            ),
            ["xla"],
            id="mixed-dtypes-in-a-group",
        ),
    ],
)
def test_falls_back_to_xla_where_the_kernels_do_not_apply(build, expected):
    tree = make(jnp.float32)
    opt = build(tree)
    info = opt.engine_info()
    assert [i.engine for i in info] == expected
    assert all(i.reason for i in info if i.engine == "xla"), info
    new = opt.step(jax.tree.map(jnp.ones_like, opt.params))
    assert all(np.isfinite(np.asarray(x, np.float32)).all() for x in jax.tree.leaves(new))


def test_opt_state_round_trip_and_structure_check():
    tree = make(jnp.float32)
    opt = optim.Adam(groups(tree), lr=1e-3)
    opt.step(grads_at(0, tree))
    state = opt.opt_state
    opt.opt_state = state  # the per-leaf layout goes back into the flat buffers unchanged
    for a, b in zip(jax.tree.leaves(opt.opt_state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match=r"structure of optimizer\.opt_state"):
        opt.opt_state = optim.SGD(groups(tree), lr=0.1, momentum=0.9).opt_state


def test_groups_beyond_one_kernel_call_match_the_xla_engine(monkeypatch):
    # A group's leaves go to the kernels in calls of LEAVES_PER_CALL (XLA compiles a call's
    # operands in quadratic time); 2 per call over 3 leaves and 2 groups exercises the parts.
    from jaxsched.optim import _engines

    monkeypatch.setattr(_engines, "LEAVES_PER_CALL", 2)
    tree = make(jnp.float32)
    for cls, kwargs in CASES:
        fast, slow = cls(groups(tree), **kwargs), cls(groups(tree, fused=False), **kwargs)
        assert engines(fast) == {"kernel"}
        for step in range(3):
            a, b = fast.step(grads_at(step, tree)), slow.step(grads_at(step, tree))
        for x, y in zip(jax.tree.leaves((a, fast.opt_state)), jax.tree.leaves((b, slow.opt_state)),
                        strict=True):  # fmt: skip
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-6, atol=2e-6)
        fast.opt_state = fast.opt_state  # the parts' buffers round-trip through the tree view
        a, b = fast.step(grads_at(3, tree)), slow.step(grads_at(3, tree))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-6, atol=2e-6)


def test_a_stale_kernel_library_is_refused_and_the_fallback_is_announced(monkeypatch):
    class Stale:  # a library built before the version symbol existed
        pass

    class Old:
        @staticmethod
        def jaxsched_kernels_version():
            return 1

    Old.jaxsched_kernels_version.restype = None  # ctypes functions carry a restype
    assert _fused.version_problem(Stale(), "lib.so") == (
        f"the kernel library at lib.so is version None, this jaxsched needs "
        f"{_fused.KERNELS_VERSION} (a stale build: reinstall jaxsched)"
    )
    assert "is version 1," in _fused.version_problem(Old(), "lib.so")

    class Reordered:  # the current version, but scalars in another order than ours
        @staticmethod
        def jaxsched_kernels_version():
            return _fused.KERNELS_VERSION

        @staticmethod
        def jaxsched_sgd_scalar_names():
            return b"momentum,neg_lr,one_minus_dampening,weight_decay,no_buffer"

        @staticmethod
        def jaxsched_adam_scalar_names():
            return ",".join(_fused.SCALAR_NAMES["adam"]).encode()

    assert "reads the sgd scalars as 'momentum,neg_lr," in _fused.version_problem(
        Reordered(), "lib.so"
    )
    # the library this build installed is current
    assert _fused.unavailable() is None
    # a fallback for a reason the user did not choose is announced once
    _fused._warn_once.cache_clear()
    monkeypatch.setattr(_fused, "unavailable", lambda: "the kernel library was not built")
    with pytest.warns(RuntimeWarning, match="not used .*not built.*run their transforms under"):
        opt = optim.Adam({"w": jnp.ones(3)}, lr=0.1)
    assert opt.engine_info()[0].reason == "the kernel library was not built"


def test_the_library_is_a_plain_shared_library_and_a_missing_one_is_named(monkeypatch):
    path = _fused.library_path()
    assert os.path.basename(path).startswith("libjaxsched_kernels.")  # no CPython ABI tag
    assert os.path.exists(path)
    library = ctypes.CDLL(path)
    assert not hasattr(library, "PyInit_kernels")  # not a Python module
    assert _fused.version_problem(library, path) is None
    monkeypatch.setattr(_fused, "library_path", lambda: "/nowhere/libjaxsched_kernels.so")
    reason = _fused.unavailable.__wrapped__()  # uncached: the process keeps its kernels
    assert reason == (
        "the kernel library was not built at install (no /nowhere/libjaxsched_kernels.so)"
    )
