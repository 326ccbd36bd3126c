"""Every optimizer configuration against torch.optim on the same random gradients."""

from __future__ import annotations

import zlib

import pytest

from tests.optimizer_cases import CASES, IDS
from tests.torch_reference import OPTIM_RTOL, random_problem, relative_difference, torch_trajectory
from tests.transforms.harness import jax_trajectory

STEPS = 1000


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torch_after_1000_steps(case, precision):
    params, grads = random_problem(STEPS, seed=zlib.crc32(case.id.encode()))
    ref = torch_trajectory(case.torch_class, case.kwargs, params, grads, precision)
    ours, _ = jax_trajectory(case.factory(**case.kwargs), params, grads, precision)
    err = relative_difference(ours, ref)
    assert err <= OPTIM_RTOL[precision], f"{case.id} ({precision}): relative difference {err:.3g}"
