"""`visionssm profile`: FLOPs = aten matmul/conv FLOPs + our ops' analytic counts, checked by hand on
vim_nano_patch4_32; the per-block table adds up to the totals."""

import math

import pytest
import timm
import torch

from visionssm.bench.profile import count_flops, format_profile, profile_model, top_level_blocks


def vim_flops_by_hand(dim=64, depth=6, img=32, patch=4, d_state=16, d_conv=4, classes=1000):
    """One image. Matmuls/convs at 2 FLOPs per multiply-add; scans 9·L·E·N + L·E (D) + L·E (gate).
    The depthwise conv1d is an aten conv (padded by width-1, so the counter sees L+width-1 outputs per
    channel) in each direction. Norms, activations, additions are not counted."""
    e, r, n = 2 * dim, math.ceil(dim / 16), d_state
    grid = img // patch
    L = grid * grid + 1  # + middle class token
    patch_embed = 2 * (3 * patch * patch) * dim * grid * grid
    per_layer_aten = (
        2 * L * dim * 2 * e  # in_proj
        + 2 * (2 * L * e * (r + 2 * n))  # x_proj, both directions
        + 2 * (2 * L * r * e)  # dt_proj (bias goes to the scan as delta_bias)
        + 2 * L * e * dim  # out_proj
        + 2 * (2 * (L + d_conv - 1) * e * d_conv)  # depthwise conv1d, both directions
    )
    head = 2 * dim * classes
    scan = 9 * L * e * n + 2 * L * e
    return {
        "aten": patch_embed + depth * per_layer_aten + head,
        "selective_scan": depth * 2 * scan,
        "per_layer": per_layer_aten + 2 * scan,
    }


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return timm.create_model("vim_nano_patch4_32").eval()


def test_vim_flops_equal_aten_plus_scans_by_hand(nano):
    want = vim_flops_by_hand()
    got = count_flops(nano, 32, torch.device("cpu"))
    assert got["aten"] == want["aten"]
    assert got["ops"] == {"selective_scan": want["selective_scan"]}
    assert got["total"] == want["aten"] + want["selective_scan"]
    for i in range(6):
        assert got["blocks"][f"layers.{i}"] == want["per_layer"]
    assert sum(got["blocks"].values()) == got["total"]  # every counted FLOP sits in a top-level block


def test_flop_count_scales_with_tokens(nano):
    """At 64px the token count goes 65 -> 257: the scan term follows L exactly."""
    m = timm.create_model("vim_nano_patch4_32", img_size=64).eval()
    got = count_flops(m, 64, torch.device("cpu"))
    assert got["ops"]["selective_scan"] == vim_flops_by_hand(img=64)["selective_scan"]


def test_profile_rows_add_up_to_the_total():
    torch.set_num_threads(1)
    p = profile_model("vim_nano_patch4_32", batch=2, warmup=1, iters=2, ops=3)
    assert p["img_size"] == 32 and p["params"] == 317_032
    names = [r["name"] for r in p["blocks"]]
    assert names[:2] == ["patch_embed", "pos_drop"] and [f"layers.{i}" for i in range(6)] == names[2:8]
    block_ms = sum(r["ms"] for r in p["blocks"])
    assert all(r["ms"] >= 0 for r in p["blocks"])
    assert 0 <= p["outside_ms"] and block_ms <= p["total_ms"]
    assert block_ms + p["outside_ms"] == pytest.approx(p["total_ms"])
    assert sum(r["flops"] for r in p["blocks"]) == p["flops"]
    assert sum(r["params"] for r in p["blocks"]) <= p["params"]  # cls token / pos_embed sit outside blocks
    assert len(p["top_ops"]) == 3 and all(o["calls"] > 0 for o in p["top_ops"])
    text = format_profile(p)
    assert "317,032 params" in text and "(outside blocks)" in text and "layers.5" in text
    assert text.count("\n") > 12


def test_top_level_blocks_open_containers():
    m = timm.create_model("vit_tiny_patch16_224", img_size=32)
    names = [n for n, _ in top_level_blocks(m)]
    assert "blocks.0" in names and "blocks.11" in names and "blocks" not in names and "head" in names


def _reported_op(x, w):
    """Stands in for one of our ops: reports an analytic count, computes with an aten matmul inside."""
    from visionssm.ops import _flops

    _flops.add("toy_op", 1000)
    return x @ w


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8, bias=False)
        self.w = torch.nn.Parameter(torch.randn(8, 8))

    def forward(self, x):
        x = x.mean((2, 3)).repeat(1, 3)[:, :8]  # (batch, 8) from an image
        return self.proj(_reported_op(x, self.w))


def test_aten_ops_inside_our_ops_are_not_counted_twice():
    got = count_flops(_Toy(), 4, torch.device("cpu"))
    assert got["ops"] == {"toy_op": 1000}
    assert got["aten"] == 2 * 8 * 8  # the Linear only; the op's inner matmul is in its own count
    assert got["total"] == 2 * 8 * 8 + 1000
