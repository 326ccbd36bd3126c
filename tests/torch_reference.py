"""Run real torch schedulers and record what they report, for parity tests."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

# Tolerances of the API contract: relative, with an absolute floor of rtol * 1e-3 * peak for
# values far below the peak (float32: 1e-9 x peak).
RTOL = {"float32": 1e-6, "float64": 1e-12}


def torch_lrs(
    make_scheduler: Callable[[torch.optim.Optimizer], object],
    steps: int,
    *,
    base_lr: float = 0.1,
    momentum: bool = False,
    optimizer: str = "sgd",
) -> tuple[np.ndarray, np.ndarray | None]:
    """``get_last_lr()[0]`` after 0..steps scheduler steps (optimizer stepped first, as torch
    recommends), and the group's momentum (or beta1) when ``momentum`` is set."""
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    if optimizer == "adam":
        opt = torch.optim.Adam([param], lr=base_lr)
    else:
        opt = torch.optim.SGD([param], lr=base_lr, momentum=0.9 if momentum else 0.0)
    sched = make_scheduler(opt)

    def current_momentum():
        group = opt.param_groups[0]
        return group["betas"][0] if "betas" in group else group["momentum"]

    lrs, moms = [sched.get_last_lr()[0]], [current_momentum()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            opt.step()
            sched.step()
            lrs.append(sched.get_last_lr()[0])
            moms.append(current_momentum())
    return np.asarray(lrs, dtype=np.float64), (np.asarray(moms) if momentum else None)


def assert_matches(ours: np.ndarray, ref: np.ndarray, precision: str, *, what: str = "") -> None:
    """Contract check: |ours - ref| <= rtol * (|ref| + 1e-3 * peak); exact zeros in float64."""
    rtol = RTOL[precision]
    ours = np.asarray(ours, dtype=np.float64)
    assert ours.shape == ref.shape
    assert np.all(np.isfinite(ours)), f"{what}: non-finite values at {np.where(~np.isfinite(ours))}"
    peak = np.max(np.abs(ref))
    bound = rtol * (np.abs(ref) + 1e-3 * peak)
    err = np.abs(ours - ref)
    bad = np.where(err > bound)[0]
    assert bad.size == 0, (
        f"{what} ({precision}): {bad.size} steps off, first at step {bad[0]}: "
        f"ours={ours[bad[0]]!r} torch={ref[bad[0]]!r}, max rel err "
        f"{np.max(err / (np.abs(ref) + 1e-3 * peak)):.3g} > {rtol}"
    )
    if precision == "float64":
        zeros = ref == 0.0
        assert np.all(ours[zeros] == 0.0), f"{what}: torch's exact zeros not reproduced"


def max_relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    peak = np.max(np.abs(ref))
    return float(np.max(np.abs(np.asarray(ours, np.float64) - ref) / (np.abs(ref) + 1e-3 * peak)))


# --- optimizers -------------------------------------------------------------------------------

OPTIM_RTOL = {"float32": 1e-5, "float64": 1e-10}


def random_problem(steps: int, seed: int = 0, shapes=((4, 3), (5,), ())):
    """Initial parameters and a sequence of gradients, as float64 numpy arrays."""
    rng = np.random.default_rng(seed)
    params = {f"p{i}": rng.normal(size=s) for i, s in enumerate(shapes)}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(steps)]
    return params, grads


def torch_trajectory(
    cls: type,
    kwargs: dict,
    params: dict,
    grads: list,
    dtype: str,
    scheduler: Callable | None = None,
) -> dict:
    """Run ``torch.optim.<cls>`` on the given gradients (``None``: no gradient, torch skips the
    parameter); return the final parameters."""
    tdtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}[dtype]
    tensors = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}
    opt = cls(list(tensors.values()), **kwargs)
    sched = scheduler(opt) if scheduler is not None else None
    for g in grads:
        for k, t in tensors.items():
            t.grad = None if g[k] is None else torch.tensor(g[k], dtype=tdtype)
        opt.step()
        if sched is not None:
            sched.step()
    return {k: t.detach().to(torch.float64).numpy() for k, t in tensors.items()}


def relative_difference(ours: dict, ref: dict) -> float:
    """The worst leaf's max|ours - ref| / scale, with scale = max|ref| over that leaf (so an
    entry passing near 0 does not count alone), floored at 1e-3 of the whole tree's peak as
    in the schedules' contract check (a leaf that ends near 0, e.g. a scalar decayed to 1e-4,
    is held to float rounding of the tree, not of itself).  A small leaf cannot hide behind a
    large one: a leaf at 1e-3 of the peak and 1e-3 off itself fails by ~100x."""
    peak = max(float(np.max(np.abs(r))) for r in ref.values())
    worst = 0.0
    for k, r in ref.items():
        o = np.asarray(ours[k], dtype=np.float64)
        assert o.shape == np.shape(r), f"{k}: shape {o.shape} != {np.shape(r)}"
        assert np.all(np.isfinite(o)), f"{k}: non-finite values"
        scale = max(float(np.max(np.abs(r))), 1e-3 * peak, 1e-300)
        worst = max(worst, float(np.max(np.abs(o - r))) / scale)
    return worst
