"""``torch.amp.GradScaler`` for the stateful optimizers: gradients are values here, so
``unscale_`` returns them and ``step`` takes them."""

from __future__ import annotations

import enum
from typing import Any

import jax
import jax.numpy as jnp

from ._loss_scaling import check_factors, unscale, update_scale


class _Stage(enum.Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


@jax.jit
def _combine(found: list[jax.Array]) -> jax.Array:
    return sum(found[1:], found[0])


class GradScaler:
    """``torch.amp.GradScaler(device="cuda", init_scale=2.0**16, growth_factor=2.0,
    backoff_factor=0.5, growth_interval=2000, enabled=True)``.

    One iteration, as torch's::

        loss, grads = jax.value_and_grad(lambda p: scaler.scale(loss_fn(p, batch)))(params)
        grads = scaler.unscale_(opt, grads)          # optional: e.g. to clip
        scaler.step(opt, grads)                      # skipped when a gradient is inf / NaN
        scaler.update()

    ``scale(x)`` multiplies by the current scale (a float32 device scalar, ``loss_scale``:
    pass it as an argument of a jitted loss rather than closing over it, which would compile
    once per scale).  ``unscale_(optimizer, grads)`` returns the unscaled gradients and records
    whether any was inf/NaN; ``step(optimizer, grads, ...)`` unscales them unless
    ``unscale_`` did, then calls ``optimizer.step(grads, ...)`` only when all were finite
    (one device-to-host read, as torch's), returning its result or ``None``.  ``update()``
    applies torch's growth / backoff rule.  Errors and state dict are torch's.

    Differences from PyTorch: ``device`` is recorded but not used (the scale lives on JAX's
    default device); torch disables itself for ``device="cuda"`` without CUDA, this does not.
    """

    def __init__(
        self,
        device: str = "cuda",
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ) -> None:
        self._device = device
        self._enabled = enabled
        if enabled:
            check_factors(growth_factor, backoff_factor, growth_interval)
        self._growth_factor = growth_factor
        self._backoff_factor = backoff_factor
        self._growth_interval = growth_interval
        self._scale = jnp.asarray(init_scale, jnp.float32)
        self._growth_tracker = jnp.zeros((), jnp.int32)
        self._states: dict[int, dict[str, Any]] = {}

    def _state(self, optimizer: Any) -> dict[str, Any]:
        return self._states.setdefault(id(optimizer), {"stage": _Stage.READY, "found_inf": None})

    @property
    def loss_scale(self) -> jax.Array:
        """The current scale as a float32 device scalar (1.0 when disabled)."""
        return self._scale if self._enabled else jnp.ones((), jnp.float32)

    def scale(self, outputs: Any) -> Any:
        """``outputs`` (an array or a tree of arrays) times the current scale."""
        if not self._enabled:
            return outputs
        return jax.tree.map(lambda x: x * self._scale.astype(jnp.result_type(x)), outputs)

    def unscale_(self, optimizer: Any, grads: Any) -> Any:
        """The gradients divided by the scale (torch's float32 reciprocal); records whether
        any was inf/NaN for ``step`` and ``update``."""
        if not self._enabled:
            return grads
        state = self._state(optimizer)
        if state["stage"] is _Stage.UNSCALED:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update()."
            )
        if state["stage"] is _Stage.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        grads, state["found_inf"] = unscale(grads, self._scale)
        state["stage"] = _Stage.UNSCALED
        return grads

    def step(self, optimizer: Any, grads: Any, *args: Any, **kwargs: Any) -> Any:
        """``optimizer.step(grads, *args, **kwargs)`` unless a gradient was inf/NaN; ``grads``
        are unscaled here unless ``unscale_`` returned them."""
        if not self._enabled:
            return optimizer.step(grads, *args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state["stage"] is _Stage.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] is _Stage.READY:
            grads = self.unscale_(optimizer, grads)
        result = None
        if not float(state["found_inf"]):
            result = optimizer.step(grads, *args, **kwargs)
        state["stage"] = _Stage.STEPPED
        return result

    def update(self, new_scale: float | jax.Array | None = None) -> None:
        """torch's update of the scale from every optimizer's inf checks since the last
        update, or ``new_scale`` as given."""
        if not self._enabled:
            return
        if new_scale is not None:
            if isinstance(new_scale, float):
                self._scale = jnp.asarray(new_scale, jnp.float32)
            else:
                if getattr(new_scale, "size", 0) != 1:
                    raise AssertionError(
                        f"new_scale should be a float or a 1-element array, got {new_scale!r}"
                    )
                self._scale = jnp.asarray(new_scale, jnp.float32).reshape(())
        else:
            found = [s["found_inf"] for s in self._states.values() if s["found_inf"] is not None]
            if not found:
                raise AssertionError("No inf checks were recorded prior to update.")
            self._scale, self._growth_tracker = _update(
                self._scale, self._growth_tracker, _combine(found),
                self._growth_factor, self._backoff_factor, self._growth_interval,
            )  # fmt: skip
        self._states = {}

    def get_scale(self) -> float:
        """The current scale as a Python float (1.0 when disabled)."""
        return float(self._scale) if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = new_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = new_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = new_interval

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict[str, Any]:
        """torch's: ``scale``, the factors, ``growth_interval``, ``_growth_tracker`` (empty
        when disabled)."""
        if not self._enabled:
            return {}
        return {
            "scale": self.get_scale(),
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": int(self._growth_tracker),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load :meth:`state_dict`'s output or a torch GradScaler's."""
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved from a disabled "
                "instance of GradScaler."
            )
        self._scale = jnp.asarray(float(state_dict["scale"]), jnp.float32)
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = jnp.asarray(int(state_dict["_growth_tracker"]), jnp.int32)


_update = jax.jit(update_scale, static_argnums=(3, 4, 5))
