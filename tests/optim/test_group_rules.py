"""optim.split_groups: torch recipes' parameter groups by rule, next to torch's own rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxsched import optim


def gpt_like():
    rng = np.random.default_rng(0)
    shapes = {
        "wte": {"embedding": (11, 4)},
        "h": {
            "0": {
                "ln_1": {"scale": (4,), "bias": (4,)},
                "attn": {"kernel": (4, 12), "bias": (12,)},
            },
            "1": {
                "ln_1": {"scale": (4,), "bias": (4,)},
                "attn": {"kernel": (4, 12), "bias": (12,)},
            },
        },
        "ln_f": {"scale": (4,)},
    }
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s)), shapes, is_leaf=lambda x: isinstance(x, tuple)
    )


def dotted(entry):
    path, _ = entry
    return ".".join(str(k.key) for k in path)


def names(group):
    return sorted(dotted(e) for e in jax.tree_util.tree_flatten_with_path(group["params"])[0])


def test_nanogpt_rule_matches_torchs_split_by_dim():
    params = gpt_like()
    groups = optim.split_groups(
        params,
        [
            {"params": lambda name, p: p.ndim >= 2, "weight_decay": 0.1},
            {"params": "*", "weight_decay": 0.0},
        ],
    )
    # nanoGPT's rule on the same named tensors
    named = {
        dotted(e): torch.zeros(e[1].shape) for e in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    decay = sorted(n for n, p in named.items() if p.dim() >= 2)
    assert names(groups[0]) == decay
    assert names(groups[1]) == sorted(set(named) - set(decay))
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    opt = optim.AdamW(groups, lr=1e-3)
    assert opt.param_groups[0]["param_names"] == [
        "h.0.attn.kernel",
        "h.1.attn.kernel",
        "wte.embedding",
    ]
    assert jax.tree.structure(opt.params) == jax.tree.structure(params)


def test_patterns_first_match_wins_and_hf_substrings_as_a_predicate():
    params = gpt_like()
    no_decay = ["bias", "ln_"]
    groups = optim.split_groups(
        params,
        [
            {"params": ["*.bias", "ln_f.*"], "weight_decay": 0.0},
            {"params": lambda name, p: any(nd in name for nd in no_decay), "lr": 0.5},
            {"params": "*"},
        ],
    )
    assert names(groups[0]) == [
        "h.0.attn.bias",
        "h.0.ln_1.bias",
        "h.1.attn.bias",
        "h.1.ln_1.bias",
        "ln_f.scale",
    ]
    assert names(groups[1]) == ["h.0.ln_1.scale", "h.1.ln_1.scale"]
    assert names(groups[2]) == ["h.0.attn.kernel", "h.1.attn.kernel", "wte.embedding"]


def test_nnx_state_and_named_pairs():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    groups = optim.split_groups(nnx.state(model, nnx.Param), [{"params": "bias"}, {"params": "*"}])
    assert names(groups[0]) == ["bias"] and names(groups[1]) == ["kernel"]
    pairs = [("a.w", jnp.ones((2, 2))), ("a.b", jnp.ones(2))]
    groups = optim.split_groups(pairs, [{"params": "*.w"}, {"params": "*.b"}])
    assert names(groups[0]) == ["a.w"] and names(groups[1]) == ["a.b"]


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        ([{"params": "*.kernel"}], ValueError, r"no group selects the parameter 'h.0.attn.bias'"),
        ([{"params": "*"}, {"params": "*.bias"}], ValueError, r"groups\[1\] selects no parameter"),
        ([{"params": 3}], TypeError, r"groups\[0\]\['params'\] must be a predicate"),
        ([{"lr": 0.1}], KeyError, r"groups\[0\] has no 'params' selector"),
        ([], ValueError, "at least one group"),
    ],
)
def test_errors_name_the_parameter_or_group(groups, error, match):
    with pytest.raises(error, match=match):
        optim.split_groups(gpt_like(), groups)


def test_lists_in_the_tree_are_refused():
    with pytest.raises(TypeError, match="give that part as a dict"):
        optim.split_groups({"layers": [jnp.ones(2)]}, [{"params": "*"}])
