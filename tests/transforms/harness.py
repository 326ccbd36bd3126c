"""Run a jaxsched transform on the same gradients as torch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

JAX_DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}


def jax_trajectory(tx: optax.GradientTransformation, params: dict, grads: list, dtype: str):
    """Apply ``tx`` to the gradients, one jitted update per step; return the final parameters."""
    jdtype = JAX_DTYPES[dtype]
    p = {k: jnp.asarray(v, jdtype) for k, v in params.items()}
    state = tx.init(p)

    @jax.jit
    def step(p, state, g):
        updates, state = tx.update(g, state, p)
        return optax.apply_updates(p, updates), state

    for g in grads:
        g = {k: None if v is None else jnp.asarray(v, jdtype) for k, v in g.items()}
        p, state = step(p, state, g)  # a new pattern of None gradients traces once more
    return {
        k: np.asarray(v.astype(jnp.float32) if dtype == "bfloat16" else v, np.float64)
        for k, v in p.items()
    }, state
