"""Torch-like stateful learning-rate schedulers over ``optimizer.param_groups``."""

from ._base import LRScheduler as LRScheduler
from ._chainable import ConstantLR as ConstantLR
from ._chainable import CosineAnnealingLR as CosineAnnealingLR
from ._chainable import ExponentialLR as ExponentialLR
from ._chainable import LambdaLR as LambdaLR
from ._chainable import LinearLR as LinearLR
from ._chainable import MultiplicativeLR as MultiplicativeLR
from ._chainable import MultiStepLR as MultiStepLR
from ._chainable import PolynomialLR as PolynomialLR
from ._chainable import StepLR as StepLR
from ._composite import ChainedScheduler as ChainedScheduler
from ._composite import ReduceLROnPlateau as ReduceLROnPlateau
from ._composite import SequentialLR as SequentialLR
from ._cyclic import CosineAnnealingWarmRestarts as CosineAnnealingWarmRestarts
from ._cyclic import CyclicLR as CyclicLR
from ._cyclic import OneCycleLR as OneCycleLR

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]
