"""Model weights between a torch state dict and flax trees, by names (see :mod:`._links`)."""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from . import _flax_trees, _layouts, _links, _tensors


def torch_side(source: Any, layouts: _links.Layouts) -> tuple[Any, _links.Layouts]:
    """A torch ``nn.Module`` as its state dict, its transposed convolutions' weights given the
    ``conv_transpose`` layout (after the caller's ``layouts``, which win); a state dict as it
    is.  A module tells what a state dict cannot: which square kernels are transposed."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(source, torch.nn.Module):
        return source, layouts
    found: dict[str, _layouts.Layout | str] = dict(layouts or {})
    for name, module in source.named_modules():
        if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
            found.setdefault(re.escape(f"{name}.weight" if name else "weight"), "conv_transpose")
    return source.state_dict(), found


def link_table(
    torch_entries: Mapping[str, Any],
    tree: _flax_trees.FlaxTree,
    rules: _links.Rules = None,
    layouts: _links.Layouts = None,
) -> _links.LinkTable:
    shapes = {p: _flax_trees.shape_of(v) for p, v in _flax_trees.leaves(tree.pure).items()}
    return _links.build(
        torch_entries, shapes, tree.collection, rules, layouts, tree.known_layouts,
        _tensors.same_memory,
    )  # fmt: skip


def torch_to_flax(
    state_dict: Mapping[str, Any],
    target: Any,
    rules: _links.Rules = None,
    layouts: _links.Layouts = None,
) -> Any:
    """torch model weights (``model.state_dict()``: tensors or numpy arrays; or the torch
    model itself, whose transposed convolutions are then recognised) as the flax weights
    ``target`` has, in ``target``'s form.

    ``target`` gives the names, shapes, dtypes and placement: a linen variables dict
    (``{"params": ..., "batch_stats": ...}``), a bare parameter dict, an nnx ``State``, or an
    nnx ``Module`` (updated in place and returned); its leaves may be abstract
    (``jax.eval_shape``, with ``sharding`` set to place the result).  Every flax leaf must
    find a torch entry and every torch entry a leaf (see :mod:`jaxsched.interop` for the
    matching, ``rules`` and ``layouts``); the values are converted to the leaf's dtype and put
    on its sharding.

    BatchNorm: torch's ``running_var`` (updated with the unbiased batch variance) is copied as
    flax's ``var`` unchanged: the loaded model normalises exactly as torch's at evaluation;
    flax updates it with the biased variance from then on (a factor ``n/(n-1)`` per update on
    the batch term).  ``num_batches_tracked`` has no flax counterpart and is left out.
    """
    state_dict, layouts = torch_side(state_dict, layouts)
    tree = _flax_trees.read(target)
    new = converted_leaves(state_dict, tree, link_table(state_dict, tree, rules, layouts))
    return tree.rebuild(_flax_trees.with_leaves(tree.pure, new))


def converted_leaves(
    state_dict: Mapping[str, Any], tree: _flax_trees.FlaxTree, table: _links.LinkTable
) -> dict[tuple[Any, ...], Any]:
    """The linked torch tensors in their flax layout, dtype and placement, by flax path; a
    narrowing of precision (torch float64 into a float32 leaf) is converted as the target says
    and reported in one ``UserWarning``."""
    old = _flax_trees.leaves(tree.pure)
    new, narrowed = {}, []
    for link in table.links:
        value = link.layout.to_flax(_tensors.to_numpy(state_dict[link.torch_name]))
        like = old[link.flax_path]
        target = np.dtype(getattr(like, "dtype", value.dtype))
        floats = jnp.issubdtype(value.dtype, jnp.floating) and jnp.issubdtype(target, jnp.floating)
        if floats and jnp.finfo(value.dtype).bits > jnp.finfo(target).bits:
            narrowed.append(f"{link.torch_name} ({value.dtype} -> {target})")
        new[link.flax_path] = _flax_trees.placed(value, like)
    if narrowed:
        warnings.warn(
            f"{len(narrowed)} torch tensors were rounded to the target's narrower dtype, "
            f"e.g. {', '.join(narrowed[:3])}: give a target of torch's dtype to keep them exact",
            UserWarning,
            stacklevel=3,
        )
    return new


def _default_layout(path: tuple[Any, ...], leaf: Any) -> _layouts.Layout:
    if str(path[-1]) == "kernel":
        return _layouts.LINEAR if np.ndim(leaf) == 2 else _layouts.CONV
    return _layouts.SAME


def flax_to_torch(
    params: Any,
    names: Mapping[str, Any] | None = None,
    rules: _links.Rules = None,
    layouts: _links.Layouts = None,
) -> dict[str, Any]:
    """flax weights (any form :func:`torch_to_flax` takes) as a torch state dict of CPU
    tensors, ready for ``model.load_state_dict`` and ``torch.save``.

    ``names``: the torch model's ``state_dict()`` or the model (recommended): the output has
    exactly its keys in its order and its dtypes; tied entries get one shared tensor, and
    entries flax has no counterpart for (``num_batches_tracked``, buffers dropped by
    ``rules``) are copied from it.  Without ``names``, each leaf's torch name is its path in
    torch's style (``"conv1.kernel"`` -> ``"conv1.weight"``) and a ``kernel`` is a Linear
    (2-d) or a convolution (more): give ``layouts`` for transposed convolutions.
    """
    names, layouts = torch_side(names, layouts)
    return tree_to_torch(_flax_trees.read(params), names, rules, layouts)


def tree_to_torch(
    tree: _flax_trees.FlaxTree,
    names: Mapping[str, Any] | None,
    rules: _links.Rules = None,
    layouts: _links.Layouts = None,
) -> dict[str, Any]:
    """:func:`flax_to_torch` on a tree already read."""
    flat = _flax_trees.leaves(tree.pure)
    table = export_table(tree, names, rules, layouts)
    if names is None:
        return {
            link.torch_name: _tensors.to_tensor(
                link.layout.to_torch(np.asarray(flat[link.flax_path]))
            )
            for link in table.links
        }
    linked = table.by_torch_name()
    out: dict[str, Any] = {}
    for name, reference in names.items():
        if name in linked:
            link = linked[name]
            value = link.layout.to_torch(np.asarray(flat[link.flax_path]))
            tensor = _tensors.to_tensor(value)
            if _tensors.is_tensor(reference):
                tensor = tensor.to(reference.dtype)
            out[name] = tensor
        elif name in table.tied:
            out[name] = out[table.tied[name]]
        else:  # a counter or an entry the rules drop: torch's own value
            out[name] = (
                reference.detach().clone()
                if _tensors.is_tensor(reference)
                else _tensors.to_tensor(reference)
            )
    return out


def export_table(
    tree: _flax_trees.FlaxTree,
    names: Mapping[str, Any] | None,
    rules: _links.Rules = None,
    layouts: _links.Layouts = None,
) -> _links.LinkTable:
    """The links for writing ``tree`` for torch: matched against the torch model's state dict
    ``names``, or, without it, each leaf under its torch-style name with the default layout."""
    if names is not None:
        return link_table(names, tree, rules, layouts)
    links = []
    for path, leaf in _flax_trees.leaves(tree.pure).items():
        flax_name = _links.flax_name(path, tree.collection)
        torch_name = _links.torch_style(_links.name_path(path, tree.collection))
        layout = (
            _links.layout_rule(layouts, torch_name)
            or tree.known_layouts.get(flax_name)
            or _default_layout(path, leaf)
        )
        links.append(_links.Link(torch_name, path, flax_name, layout))
    return _links.LinkTable(links)
