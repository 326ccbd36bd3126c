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
