"""Shared fixtures: float32 / float64 precision, switched per test (never globally)."""

from __future__ import annotations

import jax
import pytest


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
