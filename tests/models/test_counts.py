"""Exact parameter counts of every registered Vim variant (num_classes=1000), built on the meta device."""

import math

import pytest
import timm
import torch

import visionssm  # noqa: F401  (registers the models)

OFFICIAL = "bimambav2_final_pool_mean_abs_pos_embed_with_"

# name -> exact params. Ti/S/B and the stride-8 (†) numbers are plain_family.md §1.7 (derived from the
# official definitions); the aliases carry the official registered names.
PARAMS = {
    "vim_tiny_patch16_224": 7_148_008,
    "vim_small_patch16_224": 25_796_584,
    "vim_base_patch16_224": 97_598_440,
    "vim_tiny_patch16_stride8_224": 7_250_344,
    "vim_small_patch16_stride8_224": 26_001_256,
    f"vim_tiny_patch16_224_{OFFICIAL}midclstok_div2": 7_148_008,
    f"vim_small_patch16_224_{OFFICIAL}midclstok_div2": 25_796_584,
    f"vim_base_patch16_224_{OFFICIAL}middle_cls_token_div2": 97_598_440,
    f"vim_tiny_patch16_stride8_224_{OFFICIAL}midclstok_div2": 7_250_344,
    f"vim_small_patch16_stride8_224_{OFFICIAL}midclstok_div2": 26_001_256,
    "vim_nano_patch4_32": 317_032,
}


def vim_params(dim, depth, img=224, patch=16, stride=16, in_chans=3, d_state=16, d_conv=4, classes=1000):
    """Closed form from the architecture (spec §1.3 table): per block in_proj, 2x(conv, x_proj, dt_proj,
    A_log, D), out_proj, RMSNorm; plus patch embed, cls token, pos_embed, norm_f and head."""
    e, r = 2 * dim, math.ceil(dim / 16)
    per_branch = e * d_conv + e + (r + 2 * d_state) * e + e * r + e + e * d_state + e
    block = 2 * e * dim + 2 * per_branch + dim * e + dim
    tokens = ((img - patch) // stride + 1) ** 2 + 1
    stem = dim * in_chans * patch * patch + dim + dim + tokens * dim
    return depth * block + stem + dim + dim * classes + classes


def test_closed_form_matches_spec_table():
    assert vim_params(192, 24) == PARAMS["vim_tiny_patch16_224"]
    assert vim_params(384, 24) == PARAMS["vim_small_patch16_224"]
    assert vim_params(768, 24) == PARAMS["vim_base_patch16_224"]
    assert vim_params(192, 24, stride=8) == PARAMS["vim_tiny_patch16_stride8_224"]
    assert vim_params(384, 24, stride=8) == PARAMS["vim_small_patch16_stride8_224"]
    assert vim_params(64, 6, img=32, patch=4, stride=4) == PARAMS["vim_nano_patch4_32"]


def test_table_covers_every_registered_vim():
    assert sorted(timm.list_models(module="vim")) == sorted(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
