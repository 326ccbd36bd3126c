"""The parity measure itself: what it lets through and what it catches."""

from __future__ import annotations

import numpy as np

from tests.torch_reference import OPTIM_RTOL, relative_difference


def test_a_small_leaf_cannot_hide_behind_a_large_one():
    ref = {"big": np.array([100.0, -50.0]), "small": np.array([0.1, 0.2])}
    off = {"big": ref["big"], "small": ref["small"] * (1 + 1e-3)}  # the small leaf 1e-3 off
    assert relative_difference(off, ref) > 50 * OPTIM_RTOL["float32"]
    # the old whole-tree measure would have passed it: 2e-4 / 100 = 2e-6
    assert np.max(np.abs(off["small"] - ref["small"])) / 100.0 < OPTIM_RTOL["float32"]


def test_float_rounding_near_zero_is_measured_against_the_tree():
    ref = {"w": np.array([1.3, -0.7]), "s": np.array(1.5e-4)}
    ours = {"w": ref["w"] + 1e-7, "s": ref["s"] + 1.3e-8}  # float32 noise after 1000 steps
    assert relative_difference(ours, ref) < OPTIM_RTOL["float32"]
    assert relative_difference(ref, ref) == 0.0
