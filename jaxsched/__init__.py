"""jaxsched: PyTorch's optimizer and learning-rate-scheduler semantics in JAX/Optax."""

from . import amp as amp
from . import optim as optim
from . import schedules as schedules
from . import transforms as transforms
from ._clip import clip_grad_norm as clip_grad_norm
from ._clip import clip_grad_norm_ as clip_grad_norm_
from ._clip import clip_grad_value as clip_grad_value
from ._clip import clip_grad_value_ as clip_grad_value_
from ._clip import clip_grads_with_norm_ as clip_grads_with_norm_
from ._clip import get_total_norm as get_total_norm
from ._current_value import current_value as current_value
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
from .transforms import per_parameter as per_parameter
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
    "amp",
    "asgd",
    "clip_grad_norm",
    "clip_grad_norm_",
    "clip_grad_value",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "current_value",
    "get_hyperparams",
    "get_total_norm",
    "grouped",
    "lbfgs",
    "muon",
    "nadam",
    "optim",
    "per_parameter",
    "radam",
    "rmsprop",
    "rprop",
    "schedules",
    "set_hyperparams",
    "sgd",
    "sparse_adam",
    "transforms",
]
