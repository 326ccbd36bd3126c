"""Which torch state-dict entry is which flax leaf, and in what layout.

A flax leaf's path (``("layer1_0", "conv1", "kernel")``, a linen collection such as ``params``
or ``batch_stats`` left out) and a torch name (``"layer1.0.conv1.weight"``) are compared in one
canonical form: the leaf's flax name becomes torch's (``kernel``/``scale``/``embedding`` ->
``weight``, ``mean``/``var`` -> ``running_mean``/``running_var``), and a number after ``_`` or
``.`` is a position (linen's ``layers_0`` is torch's ``layers.0``).  ``rules`` rename torch
names first (a regex table or a callback; ``None`` drops an entry on purpose).  Entries left
over are accepted only when they are a tied copy of a matched tensor (one tensor saved under two
names) or a ``num_batches_tracked`` counter (flax's BatchNorm keeps none); anything else, and
any flax leaf without a torch entry, is an error that lists both sides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _layouts
from ._layouts import Layout

Rules = Mapping[str, str | None] | Callable[[str], str | None] | None
Layouts = Mapping[str, Layout | str] | None

TORCH_SUFFIX = {
    "kernel": "weight",
    "scale": "weight",
    "embedding": "weight",
    "mean": "running_mean",
    "var": "running_var",
}
COUNTER = "num_batches_tracked"


def canonical(name: str) -> str:
    return re.sub(r"_(\d+)(?=\.|$)", r".\1", name)


def torch_style(path: Sequence[Any]) -> str:
    """A flax leaf's path (collection left out) in torch's naming."""
    *parents, leaf = (str(p) for p in path)
    return ".".join([*parents, TORCH_SUFFIX.get(leaf, leaf)])


def rename(rules: Rules, name: str) -> str | None:
    if rules is None:
        return name
    if callable(rules):
        return rules(name)
    for pattern, replacement in rules.items():
        match = re.fullmatch(pattern, name)
        if match:
            return None if replacement is None else match.expand(replacement)
    return name


def layout_rule(layouts: Layouts, name: str) -> Layout | None:
    for pattern, layout in (layouts or {}).items():
        if re.fullmatch(pattern, name):
            return _layouts.named(layout)
    return None


@dataclass(frozen=True)
class Link:
    torch_name: str
    flax_path: tuple[Any, ...]  # keys into the flax tree (its collection first, if any)
    flax_name: str  # dotted, collection left out: the optimizer's param_names
    layout: Layout


@dataclass
class LinkTable:
    links: list[Link]  # in the torch state dict's order
    tied: dict[str, str] = field(default_factory=dict)  # torch name -> the matched one it repeats
    counters: list[str] = field(default_factory=list)  # num_batches_tracked entries
    dropped: list[str] = field(default_factory=list)  # renamed to None by the rules

    def by_flax_name(self) -> dict[str, Link]:
        return {link.flax_name: link for link in self.links}

    def by_torch_name(self) -> dict[str, Link]:
        return {link.torch_name: link for link in self.links}


def build(
    torch_entries: Mapping[str, Any],
    flax_leaves: Mapping[tuple[Any, ...], tuple[int, ...]],
    collection: bool,
    rules: Rules = None,
    layouts: Layouts = None,
    known_layouts: Mapping[str, Layout] | None = None,
    same_memory: Callable[[Any, Any], bool] | None = None,
) -> LinkTable:
    """Link ``torch_entries`` (name -> tensor or anything with ``.shape``) to ``flax_leaves``
    (path -> shape).  ``known_layouts``: flax names whose layout is known from their module
    (nnx ``ConvTranspose``)."""
    flax_by_canonical: dict[str, tuple[Any, ...]] = {}
    for path in flax_leaves:
        key = canonical(torch_style(name_path(path, collection)))
        if key in flax_by_canonical:
            raise ValueError(
                f"flax leaves {dotted(flax_by_canonical[key])} and {dotted(path)} both read "
                f"as torch's {key!r}: rename one, or convert with explicit rules"
            )
        flax_by_canonical[key] = path
    table = LinkTable(links=[])
    taken: dict[str, str] = {}  # canonical -> torch name
    unmatched: list[str] = []
    for torch_name, tensor in torch_entries.items():
        renamed = rename(rules, torch_name)
        if renamed is None:
            table.dropped.append(torch_name)
            continue
        key = canonical(renamed)
        found = flax_by_canonical.get(key)
        if found is None:
            twin = next(
                (
                    link.torch_name for link in table.links
                    if same_memory is not None
                    and same_memory(torch_entries[link.torch_name], tensor)
                ),
                None,
            )  # fmt: skip
            if twin is not None:
                table.tied[torch_name] = twin
            elif torch_name.rsplit(".", 1)[-1] == COUNTER:
                table.counters.append(torch_name)
            else:
                unmatched.append(torch_name)
            continue
        path = found
        if key in taken:
            raise ValueError(
                f"torch entries {taken[key]!r} and {torch_name!r} both map to the flax leaf "
                f"{dotted(path)}: fix the rules"
            )
        taken[key] = torch_name
        name = flax_name(path, collection)
        where = f"torch {torch_name!r} -> flax {dotted(path)}"
        layout = layout_rule(layouts, torch_name) or (known_layouts or {}).get(name)
        torch_shape = tuple(int(n) for n in tensor.shape)
        if layout is None:
            layout = _layouts.infer(str(path[-1]), torch_shape, flax_leaves[path], where)
        elif layout.flax_shape(torch_shape) != tuple(flax_leaves[path]):
            raise ValueError(
                f"{where}: the {layout.name} layout makes {torch_shape} into "
                f"{layout.flax_shape(torch_shape)}, the leaf is {tuple(flax_leaves[path])}"
            )
        table.links.append(Link(torch_name, path, name, layout))
    missing = [dotted(p) for k, p in flax_by_canonical.items() if k not in taken]
    if unmatched or missing:
        raise ValueError(
            f"torch and flax names do not match: torch entries without a flax leaf {unmatched}, "
            f"flax leaves without a torch entry {missing}.  Rename torch's with rules={{regex: "
            f"replacement}} (None drops an entry on purpose) or a callback"
        )
    return table


def dotted(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path)


def name_path(path: tuple[Any, ...], collection: bool) -> tuple[Any, ...]:
    """A flax leaf's path without its linen collection (``params``, ``batch_stats``)."""
    return path[1:] if collection else path


def flax_name(path: tuple[Any, ...], collection: bool) -> str:
    """A flax leaf's name: its path, collection left out, dotted (the optimizer's
    ``param_names``)."""
    return dotted(name_path(path, collection))
