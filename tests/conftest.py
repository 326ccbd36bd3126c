"""Shared fixtures: float32 / float64 precision, switched per test (never globally)."""

from __future__ import annotations

import os

import jax
import pytest
from hypothesis import settings


@pytest.fixture(params=["float32", "float64"])
def precision(request):
    """Run the test once in JAX's default float32 and once under ``jax_enable_x64``."""
    x64 = request.param == "float64"
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", x64)
    try:
        yield request.param
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def x64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


# CI runs a fixed, derandomized set of examples so that a landing never depends on luck; local
# runs explore new examples each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# tests/optim/sharded/ needs 8 XLA host devices, fixed before jax starts: the test in
# tests/optim/test_sharding.py runs that folder in a process of its own.
collect_ignore = [] if os.environ.get("JAXSCHED_SHARDED_RUN") else ["optim/sharded"]
