"""Torch-like stateful optimizers: ``param_groups``, ``step()``, ``state_dict()``."""

from . import lr_scheduler as lr_scheduler
from . import swa_utils as swa_utils
from ._classes import ASGD as ASGD
from ._classes import SGD as SGD
from ._classes import Adadelta as Adadelta
from ._classes import Adafactor as Adafactor
from ._classes import Adagrad as Adagrad
from ._classes import Adam as Adam
from ._classes import Adamax as Adamax
from ._classes import AdamW as AdamW
from ._classes import Muon as Muon
from ._classes import NAdam as NAdam
from ._classes import RAdam as RAdam
from ._classes import RMSprop as RMSprop
from ._classes import Rprop as Rprop
from ._classes import SparseAdam as SparseAdam
from ._engines import EngineInfo as EngineInfo
from ._group_rules import split_groups as split_groups
from ._hooks import RemovableHandle as RemovableHandle
from ._hooks import register_optimizer_step_post_hook as register_optimizer_step_post_hook
from ._hooks import register_optimizer_step_pre_hook as register_optimizer_step_pre_hook
from ._lbfgs import LBFGS as LBFGS
from ._optimizer import Optimizer as Optimizer
from ._param_group import ParamGroup as ParamGroup

__all__ = [
    "ASGD",
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "EngineInfo",
    "Muon",
    "NAdam",
    "Optimizer",
    "ParamGroup",
    "RAdam",
    "RMSprop",
    "RemovableHandle",
    "Rprop",
    "SparseAdam",
    "lr_scheduler",
    "register_optimizer_step_post_hook",
    "register_optimizer_step_pre_hook",
    "split_groups",
    "swa_utils",
]
