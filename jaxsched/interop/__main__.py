"""``python -m jaxsched.interop``: convert a torch training checkpoint into a JAX one (orbax)
and back.

    python -m jaxsched.interop to-jax ckpt.pt out/ --setup my_recipe:setup
    python -m jaxsched.interop to-torch out/ ckpt.pt --setup my_recipe:setup

``--setup module:function`` (or ``path/to/file.py:function``) names a function of no
arguments that builds the JAX side of the run and returns a dict: ``optimizer`` (a
:mod:`jaxsched.optim` optimizer with the recipe's groups; required), and optionally
``variables`` (flax weights beyond the parameters: linen variables, nnx state or module),
``schedulers`` (one, or ``{checkpoint key: scheduler}``), ``scaler``, ``rules``, ``layouts``
and ``names`` (the torch model's ``state_dict()``, for ``to-torch``).

The JAX checkpoint is a directory: ``arrays/`` (orbax: ``params``, ``model`` when
``variables`` were given, and the optimizer state's arrays by parameter number) and
``meta.json`` (param groups, scheduler and scaler state, the checkpoint's other entries, and
torch's entries flax has no place for: ``num_batches_tracked`` and what ``rules`` drop, written
back on the way to torch).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import _flax_trees, _tensors, _weights
from ._checkpoint import _scheduler_map, load_torch_checkpoint, to_torch_checkpoint


def _load_setup(spec: str) -> Callable[[], dict[str, Any]]:
    module_name, _, function = spec.rpartition(":")
    if not module_name or not function:
        raise SystemExit(f"--setup must be module:function or file.py:function, got {spec!r}")
    if module_name.endswith(".py"):
        location = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
        if location is None or location.loader is None:
            raise SystemExit(f"cannot import {module_name}")
        module = importlib.util.module_from_spec(location)
        location.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, function)


@contextmanager
def _phases(total: int) -> Iterator[Callable[[str], None]]:
    """A progress bar over the conversion's phases (tqdm when installed, lines otherwise)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the examples extra
        done = [0]

        def say(text: str) -> None:
            done[0] += 1
            print(f"[{done[0]}/{total}] {text}", file=sys.stderr)

        yield say
        return
    with tqdm(total=total, unit="phase") as bar:

        def advance(text: str) -> None:
            bar.set_description(text)
            bar.update(1)

        yield advance


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if _tensors.is_tensor(value) or isinstance(value, (np.ndarray, np.generic, jax.Array)):
        array = np.asarray(_tensors.to_numpy(value))
        return array.item() if array.size == 1 else array.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to meta.json")


def to_jax(source: str, out: Path, setup: dict[str, Any]) -> None:
    import orbax.checkpoint as ocp

    with _phases(3) as phase:
        phase("reading and converting the torch checkpoint")
        optimizer = setup["optimizer"]
        checkpoint = _tensors.torch_module().load(source, map_location="cpu", weights_only=True)
        resumed = load_torch_checkpoint(
            optimizer, checkpoint, variables=setup.get("variables"),
            schedulers=setup.get("schedulers"), scaler=setup.get("scaler"),
            rules=setup.get("rules"), layouts=setup.get("layouts"),
        )  # fmt: skip
        state_dict = optimizer.state_dict()
        arrays: dict[str, Any] = {
            "params": optimizer.params,
            "optimizer_state": {str(k): v for k, v in state_dict["state"].items()},
        }
        if setup.get("variables") is not None:
            arrays["model"] = _flax_trees.read(resumed["model"]).pure
        phase("writing arrays with orbax")
        out.mkdir(parents=True, exist_ok=True)
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save((out / "arrays").absolute(), arrays, force=True)
        checkpointer.wait_until_finished()
        phase("writing meta.json")
        schedulers = _scheduler_map(setup.get("schedulers"), "lr_scheduler")
        extra = {k: v for k, v in resumed.items() if k != "model"}
        # what flax has no place for (num_batches_tracked, entries the rules drop), kept for
        # the way back
        variables = setup.get("variables")
        tree = _flax_trees.read(optimizer.params if variables is None else variables)
        table = _weights.link_table(checkpoint["model"], tree, setup.get("rules"))
        torch_only = {n: checkpoint["model"][n] for n in [*table.counters, *table.dropped]}
        meta = {
            "torch_only": {n: _json_safe(v) for n, v in torch_only.items()},
            "param_groups": _json_safe(state_dict["param_groups"]),
            "schedulers": {k: _json_safe(s.state_dict()) for k, s in schedulers.items()},
            "scaler": _json_safe(setup["scaler"].state_dict()) if setup.get("scaler") else None,
            "extra": _json_safe(extra),
        }
        (out / "meta.json").write_text(json.dumps(meta, indent=1))


def _groups_as_built(saved: list[dict], optimizer: Any) -> list[dict]:
    """JSON has no tuples: a value the optimizer holds as a tuple (``betas``) becomes one."""
    groups = []
    for saved_group, group in zip(saved, optimizer.param_groups, strict=False):
        groups.append(
            {k: tuple(v) if isinstance(group.get(k), tuple) else v for k, v in saved_group.items()}
        )
    return groups


def to_torch(source: Path, out: str, setup: dict[str, Any]) -> None:
    import orbax.checkpoint as ocp

    torch = _tensors.torch_module()
    with _phases(3) as phase:
        phase("reading the JAX checkpoint")
        meta = json.loads((source / "meta.json").read_text())
        arrays = ocp.StandardCheckpointer().restore((source / "arrays").absolute())
        optimizer = setup["optimizer"]
        state = {int(k): v for k, v in arrays["optimizer_state"].items()}
        groups = _groups_as_built(meta["param_groups"], optimizer)
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        optimizer.params = arrays["params"]
        schedulers = _scheduler_map(setup.get("schedulers"), "lr_scheduler")
        for key, scheduler in schedulers.items():
            scheduler.load_state_dict(meta["schedulers"][key])
        if setup.get("scaler") is not None:
            setup["scaler"].load_state_dict(meta["scaler"])
        variables = setup.get("variables")
        if variables is not None:
            tree = _flax_trees.read(variables)
            variables = tree.rebuild(arrays["model"])
        phase("converting for torch")
        names = setup.get("names")
        if names is not None:  # torch's own entries as they were saved
            torch = _tensors.torch_module()
            names = {
                n: torch.tensor(meta["torch_only"][n], dtype=t.dtype)
                if n in meta["torch_only"] else t
                for n, t in names.items()
            }  # fmt: skip
        checkpoint = to_torch_checkpoint(
            optimizer, setup.get("schedulers"), setup.get("scaler"), variables=variables,
            names=names, rules=setup.get("rules"), layouts=setup.get("layouts"),
            extra=meta["extra"],
        )  # fmt: skip
        phase(f"writing {out}")
        torch.save(checkpoint, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jaxsched.interop",
        description="Convert a torch training checkpoint to a JAX one (orbax) and back.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, source, target in (
        ("to-jax", "torch checkpoint (.pt)", "output directory"),
        ("to-torch", "JAX checkpoint directory", "output file (.pt)"),
    ):
        command = commands.add_parser(name)
        command.add_argument("source", help=source)
        command.add_argument("target", help=target)
        command.add_argument(
            "--setup", required=True, help="module:function building the JAX side (see --help)"
        )
    args = parser.parse_args(argv)
    setup = _load_setup(args.setup)()
    if "optimizer" not in setup:
        raise SystemExit("the setup function must return a dict with an 'optimizer'")
    if args.command == "to-jax":
        to_jax(args.source, Path(args.target), setup)
    else:
        to_torch(Path(args.source), args.target, setup)


if __name__ == "__main__":
    main()
