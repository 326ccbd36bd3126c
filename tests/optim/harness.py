"""Run a jaxsched.optim optimizer and the torch.optim one on the same grouped parameters."""

from __future__ import annotations

import jax
import numpy as np
import torch

from jaxsched.optim._param_names import dotted

TREE_SHAPES = {"features": {"conv": (3, 4), "bias": (4,)}, "classifier": {"w": (4, 2), "b": (2,)}}


def make_tree(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: rng.normal(size=s), TREE_SHAPES, is_leaf=lambda x: isinstance(x, tuple)
    )


def two_groups(tree: dict, second: dict) -> list[dict]:
    return [
        {"params": {"features": tree["features"]}},
        {"params": {"classifier": tree["classifier"]}, **second},
    ]


def paths(tree) -> list:
    return [p for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


class TorchTwin:
    """torch.optim.<cls> over tensors mirroring the jaxsched groups (same numbering)."""

    def __init__(self, cls, groups: list[dict], dtype=torch.float64, **defaults):
        self.tensors = {}
        torch_groups = []
        for g in groups:
            leaves = jax.tree_util.tree_flatten_with_path(g["params"])[0]
            ts = []
            for path, leaf in leaves:
                t = torch.tensor(
                    np.asarray(leaf, dtype=np.float64), dtype=dtype, requires_grad=True
                )
                self.tensors[path] = t
                # named, as torch's named_parameters(): torch 2.13 then saves param_names
                ts.append((dotted(path), t))
            torch_groups.append({"params": ts, **{k: v for k, v in g.items() if k != "params"}})
        self.opt = cls(torch_groups, **defaults)

    def step(self, grads: dict) -> None:
        for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
            t = self.tensors[path]
            t.grad = torch.tensor(np.asarray(g, dtype=np.float64), dtype=t.dtype)
        self.opt.step()

    def params(self) -> dict:
        return {
            jax.tree_util.keystr(p): t.detach().double().numpy() for p, t in self.tensors.items()
        }


def flat(tree) -> dict:
    return {
        jax.tree_util.keystr(p): np.asarray(v, np.float64)
        for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def random_grads(seed: int, steps: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        jax.tree.map(
            lambda s: rng.normal(size=s), TREE_SHAPES, is_leaf=lambda x: isinstance(x, tuple)
        )
        for _ in range(steps)
    ]
