"""Torch's learning-rate schedulers as closed-form, jit-able ``optax`` schedules.

``schedule(k)`` is what ``scheduler.get_last_lr()[0]`` reports after ``k`` calls of
``scheduler.step()`` on a freshly built torch scheduler.  Every factory validates its arguments
at once and returns ``schedule(count) -> scalar jax.Array``.
"""

from ._compose import chained_lr as chained_lr
from ._compose import sequential_lr as sequential_lr
from ._cosine import cosine_annealing_lr as cosine_annealing_lr
from ._cosine import cosine_annealing_warm_restarts as cosine_annealing_warm_restarts
from ._cyclic import cyclic_lr as cyclic_lr
from ._cyclic import cyclic_momentum as cyclic_momentum
from ._decay import constant_lr as constant_lr
from ._decay import exponential_lr as exponential_lr
from ._decay import linear_lr as linear_lr
from ._decay import multistep_lr as multistep_lr
from ._decay import polynomial_lr as polynomial_lr
from ._decay import step_lr as step_lr
from ._lambda import lambda_lr as lambda_lr
from ._lambda import multiplicative_lr as multiplicative_lr
from ._one_cycle import one_cycle_lr as one_cycle_lr
from ._one_cycle import one_cycle_momentum as one_cycle_momentum

__all__ = [
    "chained_lr",
    "constant_lr",
    "cosine_annealing_lr",
    "cosine_annealing_warm_restarts",
    "cyclic_lr",
    "cyclic_momentum",
    "exponential_lr",
    "lambda_lr",
    "linear_lr",
    "multiplicative_lr",
    "multistep_lr",
    "one_cycle_lr",
    "one_cycle_momentum",
    "polynomial_lr",
    "sequential_lr",
    "step_lr",
]
