"""The examples run end to end (shortened) and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # whole programs in subprocesses: CI runs them, the fast lane not
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_schedules_vs_torch_prints_every_schedule_with_differences(tmp_path):
    out = run("schedules_vs_torch.py", "--epochs", "120", "--plot", str(tmp_path / "s.png"))
    for name in ("StepLR", "OneCycleLR", "CosineAnnealingWarmRestarts", "SequentialLR"):
        assert name in out
    assert "max|Δ| f32" in out and "rel x64" in out
    # Every float64 relative difference printed is far below the contract's 1e-12.
    rows = [line.split() for line in out.splitlines() if line.startswith("  torch")]
    assert len(rows) == 14
    assert all(float(row[-1]) < 1e-12 and float(row[-3]) < 1e-6 for row in rows)


def test_optimizer_vs_torch_trains_and_agrees():
    out = run("optimizer_vs_torch.py", "--epochs", "12")
    lines = out.strip().splitlines()
    losses = [float(line.split()[4]) for line in lines if line.startswith("epoch")]
    torch_losses = [float(line.split()[7]) for line in lines if line.startswith("epoch")]
    assert len(losses) == 12 and losses[-1] < 0.5 * losses[0]
    assert max(abs(a - b) for a, b in zip(losses, torch_losses, strict=True)) < 1e-9
    assert float(lines[-1].split()[-1]) < 1e-10


def test_flax_param_groups_example_trains():
    out = run("flax_param_groups.py", "--steps", "20")
    assert "param_groups[1] keys: ['params', 'lr', 'param_names', 'momentum'" in out
    losses = [float(line.split()[3]) for line in out.splitlines() if line.startswith("step")]
    assert losses[-1] < losses[0]
    assert "lrs [0.025, 0.0005]" in out  # the hand-written halving
    first, last = out.strip().splitlines()[-1].split("loss ")[1].split(" -> ")
    assert float(last) < float(first)


def test_seed_recipes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipes", EXAMPLES / "recipes.py")
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    losses = recipes.basic(epochs=8)
    assert losses[-1] < losses[0]
    recipes.keys()
    recipes.groups(epochs=3)
    recipes.step_vs_exp(epochs=4)
    seen = recipes.manual(epochs=45)
    assert seen[0] == 0.05 and seen[20] == 0.05 * 0.1 and seen[44] == 0.05 * 0.1**2
    assert recipes.parity(epochs=12) < 1e-12


def test_main_demo_trains_and_matches_torch():
    out = run("train.py", "--epochs", "6")
    rows = [line for line in out.splitlines() if line.startswith("epoch ") and "loss" in line]
    losses = [float(line.split("loss")[1]) for line in rows]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert "lr 0.1 / 0.01" in rows[0] and "lr 0.05 / 0.005" in rows[5]  # StepLR(5, 0.5)
    assert float(out.strip().splitlines()[-1].split("= ")[1]) < 1e-12


def test_train_step_example_matches_the_two_call_loop():
    out = run("train_step.py", "--steps", "40", "--layers", "6")
    rows = [line.split() for line in out.splitlines() if line.startswith("step")]
    fused = [float(row[5]) for row in rows]
    two_calls = [float(row[8].rstrip(")")) for row in rows]
    assert len(rows) >= 5 and fused[-1] < 0.5 * fused[0]
    assert max(abs(a - b) / b for a, b in zip(fused, two_calls, strict=True)) < 1e-4
    assert "14 parameter leaves" in out
    assert float(out.split("between the two: ")[1].split()[0]) < 1e-5
    assert "median ms/step make_train_step" in out


@pytest.mark.parametrize("search", [[], ["--line-search"]])
def test_lbfgs_fit_agrees_with_torch(search):
    out = run("lbfgs_fit.py", "--steps", "12", *search)
    rows = [line.split() for line in out.splitlines() if line.startswith("step")]
    assert len(rows) == 12
    losses = [float(r[3]) for r in rows]
    assert losses[-1] < 0.5 * losses[0]
    assert all(abs(float(r[3]) - float(r[5])) <= 1e-12 * float(r[5]) for r in rows)
    assert all(float(r[9]) < 1e-12 for r in rows)  # max|Δθ|


def test_muon_adamw_recipe_follows_torch():
    out = run("muon_adamw.py", "--steps", "12")
    rows = [line.split() for line in out.splitlines() if line.startswith("step")]
    assert len(rows) == 12
    for r in rows:
        assert abs(float(r[3]) - float(r[5])) < 1e-8  # the losses
        grouped, two = float(r[8]), float(r[11])
        assert grouped < 1e-5 and two < 1e-5  # one bfloat16 flip (see the example's docstring)
        assert abs(grouped - two) < 1e-12  # both jaxsched routes give the same numbers


def test_training_loop_recipe_follows_torch():
    out = run("training_loop_vs_torch.py", "--steps", "10", "--accumulation", "3")
    lines = out.strip().splitlines()
    assert sum(line.startswith("step") for line in lines) == 10
    for line in lines[-3:]:  # loss, params and EMA differences to torch (float64)
        assert float(line.split()[-1]) < 1e-12, line


def test_migrate_torch_checkpoint_continues_both_ways():
    out = run("migrate_torch_checkpoint.py", "--before", "3", "--after", "3")
    assert "resumed at epoch 3" in out and "weights_only=True" in out
    rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == 6
    assert all(float(row[-1]) < 1e-12 for row in rows)  # float64: rounding only


def test_swa_recipe_follows_torch():
    out = run("swa_vs_torch.py", "--epochs", "6", "--swa-start", "3")
    rows = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert len(rows) == 6 and all(row[1] == row[2] for row in rows)  # lrs printed equal
    assert "averaged 3 times (torch 3)" in out
    weights, stats = (
        float(v.rstrip(",")) for v in out.split("weights ")[1].split(" BatchNorm statistics ")
    )
    assert weights < 1e-12 and stats < 1e-12
