"""Every schedule against the real torch scheduler, step by step, float32 and float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.schedules.cases import CASE_IDS, CASES
from tests.torch_reference import assert_matches, torch_lrs


def evaluate(schedule, steps: int) -> np.ndarray:
    """The schedule at counts 0..steps, jitted and vmapped, as float64 numpy."""
    counts = jnp.arange(steps + 1)
    return np.asarray(jax.jit(jax.vmap(schedule))(counts), dtype=np.float64)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_schedule_matches_torch(case, precision):
    ref_lr, ref_mom = torch_lrs(case.theirs, case.steps, base_lr=case.base_lr, **case.torch_kw)
    assert_matches(evaluate(case.ours(), case.steps), ref_lr, precision, what=case.id)
    if case.momentum is not None:
        assert_matches(evaluate(case.momentum(), case.steps), ref_mom, precision, what="momentum")


@pytest.mark.parametrize("case", CASES[:12], ids=CASE_IDS[:12])
def test_eager_matches_jit(case, precision):
    """Without jit (op-by-op) the values stay within the same contract."""
    ref_lr, _ = torch_lrs(case.theirs, 60, base_lr=case.base_lr, **case.torch_kw)
    schedule = case.ours()
    eager = np.asarray([schedule(k) for k in range(61)], dtype=np.float64)
    assert_matches(eager, ref_lr, precision, what=case.id)
