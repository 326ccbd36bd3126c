"""Torch-exact optimizers as ``optax.GradientTransformation`` factories.

Each factory takes ``torch.optim.X``'s arguments (names and defaults) and returns updates that,
applied with ``optax.apply_updates``, reproduce ``torch.optim.X.step()``.
"""

from ._adafactor import AdafactorState as AdafactorState
from ._adafactor import adafactor as adafactor
from ._adam import AdamState as AdamState
from ._adam import adam as adam
from ._adam import adamw as adamw
from ._adaptive import AdadeltaState as AdadeltaState
from ._adaptive import AdagradState as AdagradState
from ._adaptive import AdamaxState as AdamaxState
from ._adaptive import RMSpropState as RMSpropState
from ._adaptive import adadelta as adadelta
from ._adaptive import adagrad as adagrad
from ._adaptive import adamax as adamax
from ._adaptive import rmsprop as rmsprop
from ._asgd import ASGDState as ASGDState
from ._asgd import RpropState as RpropState
from ._asgd import asgd as asgd
from ._asgd import rprop as rprop
from ._nadam import NAdamState as NAdamState
from ._nadam import nadam as nadam
from ._radam import RAdamState as RAdamState
from ._radam import radam as radam
from ._sgd import SGDState as SGDState
from ._sgd import sgd as sgd

__all__ = [
    "ASGDState",
    "AdadeltaState",
    "AdafactorState",
    "AdagradState",
    "AdamState",
    "AdamaxState",
    "NAdamState",
    "RAdamState",
    "RMSpropState",
    "RpropState",
    "SGDState",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "asgd",
    "nadam",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
]
