r"""``torch.optim.swa_utils``: weight averaging (``AveragedModel``, the ``get_*_avg_fn``
functions, and :func:`weight_average`, its functional form; see :mod:`._averaging`) and
stochastic weight averaging's learning-rate schedule.

:class:`SWALR` anneals every group's lr from where it is to ``swa_lr`` over
``anneal_epochs`` epochs, then holds it.  It is chainable like torch's: each step reconstructs
the lr the previous step would have started from (so a hand-written ``group["lr"]``, or
another scheduler stepped before it, is honoured), then moves a fraction
:math:`\alpha(t)` towards ``swa_lr``:

.. math::
    t = \min\Big(1, \frac{s}{\max(1, E)}\Big), \quad
    \alpha_{cos}(t) = \frac{1 - \cos \pi t}{2}, \quad \alpha_{linear}(t) = t, \qquad
    \eta_s = \alpha(t)\,\eta_{swa} + (1 - \alpha(t))
        \frac{\eta_{s-1} - \alpha(t_{s-1})\,\eta_{swa}}{1 - \alpha(t_{s-1})}

with :math:`s` the scheduler's step count and :math:`E` = ``anneal_epochs`` (:math:`s \ge 1`
when :math:`E = 0`).  ``update_bn`` recomputes a flax model's (linen or nnx) BatchNorm statistics
(:mod:`._update_bn`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from ._averaging import AveragedModel as AveragedModel
from ._averaging import AverageState as AverageState
from ._averaging import WeightAverage as WeightAverage
from ._averaging import get_ema_avg_fn as get_ema_avg_fn
from ._averaging import get_ema_multi_avg_fn as get_ema_multi_avg_fn
from ._averaging import get_swa_avg_fn as get_swa_avg_fn
from ._averaging import get_swa_multi_avg_fn as get_swa_multi_avg_fn
from ._averaging import weight_average as weight_average
from ._update_bn import update_bn as update_bn
from .lr_scheduler._base import LRScheduler, per_group

__all__ = [
    "SWALR",
    "AverageState",
    "AveragedModel",
    "WeightAverage",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
    "update_bn",
    "weight_average",
]


def _cosine(t: float) -> float:
    return (1 - math.cos(math.pi * t)) / 2


def _linear(t: float) -> float:
    return t


_ANNEAL = {"cos": _cosine, "linear": _linear}


class SWALR(LRScheduler):
    """torch's ``SWALR(optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos",
    last_epoch=-1)``: writes ``swa_lr`` into every group (a float, or one per group) and
    anneals to it.  Its state dict is torch's (``_anneal_strategy`` and ``anneal_epochs``
    besides the common entries), both ways."""

    _state_keys = ("_anneal_strategy", "anneal_epochs")

    def __init__(
        self,
        optimizer: Any,
        swa_lr: float,
        anneal_epochs: int = 10,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        last_epoch: int = -1,
    ) -> None:
        for value, group in zip(
            per_group("swa_lr", optimizer, swa_lr), optimizer.param_groups, strict=True
        ):
            group["swa_lr"] = value
        if anneal_strategy not in _ANNEAL:
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}"
            )
        self._anneal_strategy = anneal_strategy
        if (
            isinstance(anneal_epochs, bool)
            or not isinstance(anneal_epochs, int)
            or anneal_epochs < 0
        ):
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_outside_step()
        anneal = _ANNEAL[self._anneal_strategy]
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        span = max(1, self.anneal_epochs)
        prev_alpha = anneal(max(0, min(1, (step - 1) / span)))
        alpha = anneal(max(0, min(1, step / span)))
        lrs = []
        for group in self.optimizer.param_groups:
            swa = group["swa_lr"]
            prev = swa if prev_alpha == 1 else (group["lr"] - prev_alpha * swa) / (1 - prev_alpha)
            lrs.append(swa * alpha + prev * (1 - alpha))
        return lrs
