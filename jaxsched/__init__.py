"""jaxsched: PyTorch's optimizer and learning-rate-scheduler semantics in JAX/Optax."""

from . import optim as optim
from . import schedules as schedules
from . import transforms as transforms
from ._grouped import GroupedState as GroupedState
from ._grouped import get_hyperparams as get_hyperparams
from ._grouped import grouped as grouped
from ._grouped import set_hyperparams as set_hyperparams
from .transforms import adadelta as adadelta
from .transforms import adafactor as adafactor
from .transforms import adagrad as adagrad
from .transforms import adam as adam
from .transforms import adamax as adamax
from .transforms import adamw as adamw
from .transforms import asgd as asgd
from .transforms import lbfgs as lbfgs
from .transforms import muon as muon
from .transforms import nadam as nadam
from .transforms import radam as radam
from .transforms import rmsprop as rmsprop
from .transforms import rprop as rprop
from .transforms import sgd as sgd
from .transforms import sparse_adam as sparse_adam

__version__ = "0.1.0"

__all__ = [
    "GroupedState",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "asgd",
    "get_hyperparams",
    "grouped",
    "lbfgs",
    "muon",
    "nadam",
    "optim",
    "radam",
    "rmsprop",
    "rprop",
    "schedules",
    "set_hyperparams",
    "sgd",
    "sparse_adam",
    "transforms",
]
