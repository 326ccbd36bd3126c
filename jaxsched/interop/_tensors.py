"""torch tensors <-> numpy arrays at the interop boundary (torch is imported only here and in
the other ``interop`` modules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def torch_module() -> Any:
    try:
        import torch
    except ImportError as error:  # pragma: no cover - torch is a test/extra dependency
        raise ImportError(
            "jaxsched.interop needs torch: pip install 'jaxsched[torch]' (torch==2.13.0)"
        ) from error
    return torch


def is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_numpy(value: Any) -> np.ndarray:
    """A host copy as numpy; torch's bfloat16 (which numpy lacks) as ml_dtypes' bfloat16."""
    if is_tensor(value):
        torch = torch_module()
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            import ml_dtypes

            return value.float().numpy().astype(ml_dtypes.bfloat16)
        return value.numpy().copy()
    return np.array(value, copy=True)


def to_tensor(value: Any) -> Any:
    """A torch CPU tensor owning a copy of ``value`` (numpy, jax or a Python number)."""
    torch = torch_module()
    array = np.asarray(value)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True))


def shape_of(value: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in value.shape)


def same_memory(a: Any, b: Any) -> bool:
    """Whether two entries of a state dict are one tensor saved twice (tied weights)."""
    if is_tensor(a) and is_tensor(b):
        return (
            a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
            and a.storage_offset() == b.storage_offset()
            and tuple(a.shape) == tuple(b.shape)
            and tuple(a.stride()) == tuple(b.stride())
        )
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and np.shares_memory(a, b)
    return a is b


def weights_only_safe(value: Any) -> Any:
    """``value`` with every array as a torch tensor and every numpy scalar as a Python number:
    what ``torch.load(weights_only=True)`` accepts (dicts, lists, tuples, str, numbers, None,
    tensors)."""
    if isinstance(value, Mapping):
        return {k: weights_only_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(weights_only_safe(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("jax"):
        return to_tensor(value)
    return value
