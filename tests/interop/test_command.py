"""python -m jaxsched.interop: a torch checkpoint to an orbax directory and back, unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from jaxsched.interop.__main__ import main

from .test_checkpoint import torch_cnn_run


@pytest.mark.slow
def test_to_jax_and_back_to_torch_keeps_every_entry(tmp_path, x64):
    torch_cnn_run(tmp_path)  # writes tmp_path / "ckpt.pt" mid-run
    setup = "tests.interop.recipe_setup:setup"
    main(["to-jax", str(tmp_path / "ckpt.pt"), str(tmp_path / "jax"), "--setup", setup])
    meta = json.loads((tmp_path / "jax" / "meta.json").read_text())
    assert meta["extra"] == {"epoch": 3}
    assert meta["param_groups"][0]["param_names"][0] == "conv1.kernel"
    assert (tmp_path / "jax" / "arrays").is_dir()
    main(["to-torch", str(tmp_path / "jax"), str(tmp_path / "back.pt"), "--setup", setup])
    original = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert back["epoch"] == 3
    assert list(back["model"]) == list(original["model"])
    for name, tensor in original["model"].items():
        if name.endswith("running_var") or name.endswith("running_mean"):
            np.testing.assert_array_equal(back["model"][name].numpy(), tensor.numpy())
        else:
            assert torch.equal(back["model"][name], tensor), name
    assert back["lr_scheduler"] == original["lr_scheduler"]
    saved, ours = original["optimizer"], back["optimizer"]
    for a, b in zip(saved["param_groups"], ours["param_groups"], strict=True):
        assert a["param_names"] == b["param_names"] and a["params"] == b["params"]
        assert {k: v for k, v in a.items() if k not in ("params", "param_names")} == {
            k: v for k, v in b.items() if k not in ("params", "param_names")
        }
    assert saved["state"].keys() == ours["state"].keys()
    for pid, entries in saved["state"].items():
        assert torch.equal(ours["state"][pid]["momentum_buffer"], entries["momentum_buffer"])


def test_the_command_line_says_what_it_takes():
    result = subprocess.run(
        [sys.executable, "-m", "jaxsched.interop", "to-jax", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "--setup" in result.stdout
