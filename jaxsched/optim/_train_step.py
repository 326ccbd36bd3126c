"""``optimizer.make_train_step(loss_fn)``: loss, gradients and update in one jitted program."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from .._clip import clip_grad_norm_, clip_grad_value_, get_total_norm
from . import _programs

if TYPE_CHECKING:
    from ._optimizer import Optimizer


class TrainStep:
    """``train_step(*args, **kwargs)``: one training step of ``optimizer`` on
    ``loss_fn(params, *args, **kwargs)``, stored into the optimizer; returns the loss (``(loss,
    aux)`` with ``has_aux``).  ``train_step.lower(*args, **kwargs)`` returns the program it
    would run, lowered (``jax.stages.Lowered``), without running it.

    The kernels write new parameter buffers (the loss reads the old ones); the state is
    consumed, unless the loss calls back into Python (``jax.debug.callback``, ...), which may
    raise while the program runs: then nothing is donated and a failed step loses nothing.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        loss_fn: Callable[..., Any],
        *,
        has_aux: bool,
        accumulation_steps: int = 1,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        clip_value: float | None = None,
    ):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        if (
            isinstance(accumulation_steps, bool)
            or not isinstance(accumulation_steps, int)
            or accumulation_steps < 1
        ):
            raise ValueError(
                f"accumulation_steps must be a positive int, got {accumulation_steps!r}"
            )
        if max_norm is not None and clip_value is not None:
            raise ValueError(
                "give max_norm (clip_grad_norm_) or clip_value (clip_grad_value_), not both"
            )
        if max_norm is not None:
            get_total_norm({}, norm_type)  # torch's error for a bad norm_type, now
        self._optimizer = optimizer
        self._loss_fn = loss_fn
        self._has_aux = bool(has_aux)
        self._accumulation_steps = accumulation_steps
        self._clip = (max_norm, float(norm_type), clip_value)
        self._key = ("train", loss_fn, self._has_aux, accumulation_steps, self._clip)

    def _prepare(self, grads: Any) -> Any:
        max_norm, norm_type, clip_value = self._clip
        if max_norm is not None:
            return clip_grad_norm_(grads, max_norm, norm_type)[0]
        assert clip_value is not None
        return clip_grad_value_(grads, clip_value)

    def _entry(self, update: Callable) -> Callable:
        opt = self._optimizer
        clipping = self._clip[0] is not None or self._clip[2] is not None
        return _programs.train_step(
            update, self._loss_fn, self._has_aux, opt._treedef,
            accumulation_steps=self._accumulation_steps,
            prepare=self._prepare if clipping else None,
        )  # fmt: skip

    def _program(self, args: tuple, kwargs: dict) -> _programs.Programs:
        opt = self._optimizer
        callback = opt._callbacks.get(self._key)
        if callback is None:
            sample = args, kwargs
            if self._accumulation_steps > 1:  # one micro-batch
                sample = jax.tree.map(lambda x: x[0], sample)
            callback = opt._callbacks[self._key] = _programs.calls_back(
                self._loss_fn, opt._params, *sample[0], **sample[1]
            )
        return opt._programs_for(self._key, self._entry, False, () if callback else (1,))

    def _arguments(self, args: tuple, kwargs: dict) -> tuple:
        opt = self._optimizer
        k = self._accumulation_steps
        if k > 1:
            for x in jax.tree.leaves((args, kwargs)):
                if not jnp.ndim(x) or jnp.shape(x)[0] != k:
                    raise ValueError(
                        f"with accumulation_steps={k} every argument holds {k} micro-batches "
                        f"along its first axis; got one of shape {jnp.shape(x)}"
                    )
        opt._sync()
        return (opt._leaves, opt._inner, opt._vector.current(), args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        opt = self._optimizer
        _programs.check_not_traced(jax.tree.leaves((args, kwargs)), "train_step")
        full = self._arguments(args, kwargs)
        leaves, inner, vector, out = self._program(args, kwargs).run(full, opt._zero_decay_applies)
        opt._adopt("train_step", leaves, inner, vector)
        return out

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        """The program ``train_step(*args, **kwargs)`` would run, lowered."""
        full = self._arguments(args, kwargs)
        return self._program(args, kwargs).lower(full, self._optimizer._zero_decay_applies)
