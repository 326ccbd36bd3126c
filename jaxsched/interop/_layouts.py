"""How one torch tensor's memory layout maps to its flax counterpart's, and back.

torch stores a ``Linear`` weight as ``(out, in)`` and a convolution's as ``(out, in/groups,
*kernel)``; flax stores a ``Dense``/``Linear`` kernel as ``(in, out)`` and a convolution's as
``(*kernel, in/groups, out)``.  A transposed convolution is ``(in, out/groups, *kernel)`` in
torch; flax's ``ConvTranspose`` (``transpose_kernel=False``, its default) holds ``(*kernel, in,
out)`` with the spatial axes reversed.  Norm scales and biases, embeddings and BatchNorm running
statistics keep their shape.  Each :class:`Layout` is a pair of pure numpy functions, applied
to a parameter and to every optimizer buffer of the parameter's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """A named pair of inverse array maps: ``to_flax(torch_array)`` and
    ``to_torch(flax_array)``.  Give your own for anything the built-ins do not cover."""

    name: str
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]

    def flax_shape(self, torch_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The flax shape of a torch tensor of ``torch_shape`` (computed on a zero-stride
        view: nothing of that size is allocated)."""
        return tuple(self.to_flax(np.broadcast_to(np.zeros((), np.uint8), torch_shape)).shape)


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _linear(x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise ValueError(f"a Linear weight is 2-d, got shape {x.shape}")
    return x.T


def _conv_to_flax(x: np.ndarray) -> np.ndarray:  # (O, I, *K) -> (*K, I, O)
    return np.transpose(x, (*range(2, x.ndim), 1, 0))


def _conv_to_torch(x: np.ndarray) -> np.ndarray:  # (*K, I, O) -> (O, I, *K)
    n = x.ndim
    return np.transpose(x, (n - 1, n - 2, *range(n - 2)))


def _spatial_flip(x: np.ndarray, axes: range) -> np.ndarray:
    return np.flip(x, axis=tuple(axes))


def _conv_transpose_to_flax(x: np.ndarray) -> np.ndarray:  # (I, O, *K) -> flip(*K), I, O
    return _spatial_flip(np.transpose(x, (*range(2, x.ndim), 0, 1)), range(x.ndim - 2))


def _conv_transpose_to_torch(x: np.ndarray) -> np.ndarray:
    n = x.ndim
    return np.transpose(_spatial_flip(x, range(n - 2)), (n - 2, n - 1, *range(n - 2)))


SAME = Layout("same", _same, _same)
LINEAR = Layout("linear", _linear, _linear)
CONV = Layout("conv", _conv_to_flax, _conv_to_torch)
CONV_TRANSPOSE = Layout("conv_transpose", _conv_transpose_to_flax, _conv_transpose_to_torch)

BUILT_IN = {layout.name: layout for layout in (SAME, LINEAR, CONV, CONV_TRANSPOSE)}


def named(layout: Layout | str) -> Layout:
    """A :class:`Layout`, or the name of a built-in one."""
    if isinstance(layout, Layout):
        return layout
    if layout not in BUILT_IN:
        raise ValueError(f"unknown layout {layout!r}: one of {sorted(BUILT_IN)} or a Layout")
    return BUILT_IN[layout]


def infer(
    flax_leaf: str, torch_shape: tuple[int, ...], flax_shape: tuple[int, ...], where: str
) -> Layout:
    """The layout linking a torch tensor to a flax leaf named ``flax_leaf`` (the last part of
    its path), from the leaf's name and both shapes; refused when nothing fits.  A ``kernel`` of
    3 dimensions or more is a convolution (``conv``): a transposed convolution whose shape
    could also be a convolution's (as many in as out channels) cannot be told apart by shape
    and needs ``layouts={...: "conv_transpose"}`` (an nnx ``ConvTranspose`` module is
    recognised by its class)."""
    if flax_leaf == "kernel" and len(torch_shape) == 2:
        candidates = [LINEAR]
    elif flax_leaf == "kernel" and len(torch_shape) >= 3:
        candidates = [CONV, CONV_TRANSPOSE]
    else:
        candidates = [SAME]
    for layout in candidates:
        if layout.flax_shape(torch_shape) == flax_shape:
            return layout
    vector_like = sum(n > 1 for n in torch_shape) <= 1 and sum(n > 1 for n in flax_shape) <= 1
    if candidates == [SAME] and vector_like and np.prod(torch_shape) == np.prod(flax_shape):
        return reshaped(torch_shape, flax_shape)  # e.g. a LayerNorm scale (1, C) vs (C,)
    raise ValueError(
        f"{where}: torch shape {torch_shape} does not fit the flax leaf {flax_leaf!r} of shape "
        f"{flax_shape} under the {'/'.join(c.name for c in candidates)} layout; give "
        f"layouts={{pattern: Layout(...)}} for this tensor"
    )


def reshaped(torch_shape: tuple[int, ...], flax_shape: tuple[int, ...]) -> Layout:
    """The same elements in another shape (one axis longer than 1 on each side)."""
    return Layout(
        f"reshape{torch_shape}->{flax_shape}",
        lambda x: np.reshape(x, flax_shape),
        lambda x: np.reshape(x, torch_shape),
    )
