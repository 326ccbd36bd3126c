"""jaxsched: PyTorch's optimizer and learning-rate-scheduler semantics in JAX/Optax."""

from . import schedules as schedules

__version__ = "0.1.0"

__all__ = ["schedules"]
