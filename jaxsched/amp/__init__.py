"""Dynamic loss scaling for float16 training, as ``torch.amp``: the stateful
:class:`GradScaler` and its functional form :func:`loss_scaling`."""

from ._grad_scaler import GradScaler as GradScaler
from ._loss_scaling import LossScaleState as LossScaleState
from ._loss_scaling import loss_scaling as loss_scaling
from ._loss_scaling import unscale as unscale
from ._loss_scaling import update_scale as update_scale

__all__ = ["GradScaler", "LossScaleState", "loss_scaling", "unscale", "update_scale"]
