"""The scheduler protocol of ``torch.optim.lr_scheduler``, over any torch-like ``param_groups``.

Learning rates are Python floats computed with torch's operations in torch's order, so
``get_last_lr()`` is bit-identical to torch's; stepping a scheduler touches only the host-side
``param_groups`` (no device transfer; the optimizer picks the values up at its next step).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated where "
    "possible. Please use `scheduler.step()` to step the scheduler. During the deprecation, if "
    "epoch is different from None, the closed form is used instead of the new chainable form, "
    "where available. Please open an issue if you are unable to replicate your use case: "
    "https://github.com/pytorch/pytorch/issues/new/choose."
)
CALL_ORDER_WARNING = (
    "Detected call of `lr_scheduler.step()` before `optimizer.step()`. In PyTorch 1.1.0 and "
    "later, you should call them in the opposite order: `optimizer.step()` before "
    "`lr_scheduler.step()`.  Failure to do this will result in PyTorch skipping the first value "
    "of the learning rate schedule. See more details at "
    "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
)
OVERRIDDEN_STEP_WARNING = (
    "Seems like `optimizer.step()` has been overridden after learning rate scheduler "
    "initialization. Please, make sure to call `optimizer.step()` before `lr_scheduler.step()`. "
    "See more details at https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
)
GET_LR_WARNING = (
    "To get the last learning rate computed by the scheduler, please use `get_last_lr()`."
)
_COMMON_STATE = (
    "_get_lr_called_within_step",
    "_is_initial",
    "_last_lr",
    "_step_count",
    "base_lrs",
    "last_epoch",
)


def check_optimizer(optimizer: Any) -> None:
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")


def step_function(optimizer: Any) -> Any:
    """What ``optimizer.step`` is (the class's function for the usual bound method): a
    scheduler compares it with what it was at construction, as torch's wrapper does."""
    step = getattr(optimizer, "step", None)
    return getattr(step, "__func__", step)


def optimizer_has_stepped(optimizer: Any) -> bool:
    """Whether ``optimizer.step()`` ran (jaxsched optimizers count their steps; for other
    duck-typed optimizers the call-order check is skipped)."""
    return getattr(optimizer, "steps_taken", 1) > 0


def per_group(name: str, optimizer: Any, value: Any) -> list[Any]:
    """A scalar for every group, or a list/tuple with one entry per group (torch's message)."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(value)} values, param_groups has {groups}."
            )
        return list(value)
    return [value] * groups


class LRScheduler:
    """Base class: ``initial_lr`` set at construction (setdefault), one step at construction,
    ``last_epoch``/``base_lrs``/``get_last_lr()``, ``step()``, ``state_dict()``.

    Subclasses define :meth:`get_lr` (the chainable rule, reading ``group["lr"]``) and, where
    torch has one, ``_get_closed_form_lr`` (used by the deprecated ``step(epoch)``)."""

    _state_keys: ClassVar[tuple[str, ...]] = ()  # the subclass' hyperparameters, for state_dict
    _get_lr_called_within_step: bool = False
    _is_initial: bool = False

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        self.optimizer = optimizer
        self._step_at_construction = step_function(optimizer)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                        "scheduler with last_epoch >= 0.\nThis typically happens when:\n1. "
                        "You're trying to resume training from a checkpoint but haven't properly "
                        "loaded the optimizer state\n2. You're using last_epoch >= 0 for a fresh "
                        "training run (not recommended)"
                    )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates the last step wrote (one per group)."""
        return self._last_lr

    def _warn_outside_step(self) -> None:
        if not self._get_lr_called_within_step:
            warnings.warn(GET_LR_WARNING, UserWarning, stacklevel=3)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (or, deprecated, jump to ``epoch`` with the closed form)."""
        if self._step_count == 1:
            replaced = step_function(self.optimizer) is not getattr(
                self, "_step_at_construction", step_function(self.optimizer)
            )
            if replaced:
                warnings.warn(OVERRIDDEN_STEP_WARNING, UserWarning, stacklevel=2)
            elif not optimizer_has_stepped(self.optimizer):
                warnings.warn(CALL_ORDER_WARNING, UserWarning, stacklevel=2)
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                closed = getattr(self, "_get_closed_form_lr", None)
                values = closed() if closed is not None else self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        self._write("lr", values)

    def _write(self, key: str, values: Sequence[Any]) -> None:
        for group, value in zip(self.optimizer.param_groups, values, strict=True):
            group[key] = value
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """torch's keys: the scheduler's hyperparameters and its bookkeeping."""
        keys = sorted({*_COMMON_STATE, *self._state_keys})
        return {key: _copy(getattr(self, key)) for key in keys if hasattr(self, key)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` or from a torch scheduler's ``state_dict()``."""
        for key, value in state_dict.items():
            setattr(self, key, _copy(value))


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return type(value)({k: _copy(v) for k, v in value.items()})
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value
