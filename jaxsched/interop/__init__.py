"""PyTorch checkpoints in JAX and back: model weights, optimizer, scheduler and GradScaler state
matched **by names**, with torch's memory layouts converted (the only module that imports torch).

Names.  A flax leaf's path and a torch state-dict name are compared in one canonical form:
``kernel``/``scale``/``embedding`` read as torch's ``weight``, ``mean``/``var`` (BatchNorm's
``batch_stats``) as ``running_mean``/``running_var``, linen's ``layers_0`` as torch's
``layers.0``; a linen collection (``params``, ``batch_stats``) is not part of the name.
``rules`` rename torch's names first: ``{regex: replacement}`` (full match, first pattern wins,
``\\1`` groups; ``None`` drops the entry on purpose) or a callback ``name -> name | None``.
Left-over torch entries are accepted only when they repeat a matched tensor (tied weights, e.g.
nanoGPT's ``lm_head.weight``) or are a BatchNorm ``num_batches_tracked``; anything else, and
any flax leaf without a torch entry, raises with both lists.

Layouts.  Linear ``(out, in)`` <-> Dense ``(in, out)``; Conv ``(out, in, *k)`` <-> ``(*k, in,
out)``; ConvTranspose ``(in, out, *k)`` <-> flax's ``(*k, in, out)`` with the kernel flipped
(nnx ``ConvTranspose`` modules are recognised, and torch's when the torch model is given
instead of its state dict; otherwise say ``layouts={regex: "conv_transpose"}``: a square
kernel's shape cannot tell); norm scales and biases, embeddings and running
statistics as they are.  ``layouts`` (regex on the torch name -> a built-in name or a
:class:`Layout` of two functions) overrides anything.

Entry points: :func:`torch_to_flax` / :func:`flax_to_torch` (weights), and
:mod:`jaxsched.optim` optimizer and its schedulers, and back); ``python -m jaxsched.interop``
converts files.
"""

from ._checkpoint import load_torch_checkpoint as load_torch_checkpoint
from ._checkpoint import to_torch_checkpoint as to_torch_checkpoint
from ._layouts import Layout as Layout
from ._weights import flax_to_torch as flax_to_torch
from ._weights import torch_to_flax as torch_to_flax

__all__ = [
    "Layout",
    "flax_to_torch",
    "torch_to_flax",
]
