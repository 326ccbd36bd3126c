"""Torch-exact optimizers as ``optax.GradientTransformation`` factories.

Each factory takes ``torch.optim.X``'s arguments (names and defaults) and returns updates that,
applied with ``optax.apply_updates``, reproduce ``torch.optim.X.step()``.
"""

from ._adam import AdamState as AdamState
from ._adam import adam as adam
from ._adam import adamw as adamw
from ._sgd import SGDState as SGDState
from ._sgd import sgd as sgd

__all__ = ["AdamState", "SGDState", "adam", "adamw", "sgd"]
