"""Count XLA compilations (JAX's monitoring events), to prove that something never recompiles."""

from __future__ import annotations

import contextlib

import jax

_COUNT = [0]


def _listener(name: str, secs: float, **kwargs) -> None:
    del secs, kwargs
    if name == "/jax/core/compile/backend_compile_duration":
        _COUNT[0] += 1


jax.monitoring.register_event_duration_secs_listener(_listener)


@contextlib.contextmanager
def count_compiles():
    """``with count_compiles() as n: ...``; ``n()`` is the number of backend compiles so far."""
    start = _COUNT[0]
    yield lambda: _COUNT[0] - start
