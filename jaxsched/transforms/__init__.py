"""Torch-exact optimizers as ``optax.GradientTransformation`` factories.

Each factory takes ``torch.optim.X``'s arguments (names and defaults) and returns updates that,
applied with ``optax.apply_updates``, reproduce ``torch.optim.X.step()``.
"""

from ._adadelta import AdadeltaState as AdadeltaState
from ._adadelta import adadelta as adadelta
from ._adafactor import AdafactorState as AdafactorState
from ._adafactor import adafactor as adafactor
from ._adagrad import AdagradState as AdagradState
from ._adagrad import adagrad as adagrad
from ._adam import AdamState as AdamState
from ._adam import adam as adam
from ._adam import adamw as adamw
from ._adamax import AdamaxState as AdamaxState
from ._adamax import adamax as adamax
from ._asgd import ASGDState as ASGDState
from ._asgd import asgd as asgd
from ._lbfgs import LBFGSState as LBFGSState
from ._lbfgs import lbfgs as lbfgs
from ._muon import MuonState as MuonState
from ._muon import muon as muon
from ._nadam import NAdamState as NAdamState
from ._nadam import nadam as nadam
from ._per_parameter import Spread as Spread
from ._per_parameter import per_parameter as per_parameter
from ._per_parameter import per_parameter_factory as per_parameter_factory
from ._radam import RAdamState as RAdamState
from ._radam import radam as radam
from ._rmsprop import RMSpropState as RMSpropState
from ._rmsprop import rmsprop as rmsprop
from ._rprop import RpropState as RpropState
from ._rprop import rprop as rprop
from ._sgd import SGDState as SGDState
from ._sgd import sgd as sgd
from ._sparse_adam import SparseAdamState as SparseAdamState
from ._sparse_adam import sparse_adam as sparse_adam

__all__ = [
    "ASGDState",
    "AdadeltaState",
    "AdafactorState",
    "AdagradState",
    "AdamState",
    "AdamaxState",
    "LBFGSState",
    "MuonState",
    "NAdamState",
    "RAdamState",
    "RMSpropState",
    "RpropState",
    "SGDState",
    "SparseAdamState",
    "Spread",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "asgd",
    "lbfgs",
    "muon",
    "nadam",
    "per_parameter",
    "per_parameter_factory",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
    "sparse_adam",
]
