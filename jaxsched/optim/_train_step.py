"""``optimizer.make_train_step(loss_fn)``: loss, gradients and update in one jitted program."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax

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

    def __init__(self, optimizer: Optimizer, loss_fn: Callable[..., Any], *, has_aux: bool):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self._optimizer = optimizer
        self._loss_fn = loss_fn
        self._has_aux = bool(has_aux)
        self._key = ("train", loss_fn, self._has_aux)

    def _entry(self, update: Callable) -> Callable:
        opt = self._optimizer
        return _programs.train_step(update, self._loss_fn, self._has_aux, opt._treedef)

    def _program(self, args: tuple, kwargs: dict) -> _programs.Programs:
        opt = self._optimizer
        callback = opt._callbacks.get(self._key)
        if callback is None:
            callback = opt._callbacks[self._key] = _programs.calls_back(
                self._loss_fn, opt._params, *args, **kwargs
            )
        return opt._programs_for(self._key, self._entry, False, () if callback else (1,))

    def _arguments(self, args: tuple, kwargs: dict) -> tuple:
        opt = self._optimizer
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
