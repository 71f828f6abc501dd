"""VisionMamba: shapes at two resolutions, features API, a few optimisation steps, checkpoint
conversion from official key names, grad checkpointing, and torch-vs-reference backend agreement."""

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed

from visionssm.models.vim import VisionMamba, checkpoint_filter_fn, resample_pos_embed_mid_cls

from ._steps import adamw_losses

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, d_state=4, num_classes=10)  # 4x4 grid


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return VisionMamba(**{**TINY, **kw})


def official_keys(depth):
    """State-dict keys of hustvl/Vim released checkpoints (plain_family.md §1.8)."""
    keys = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm_f.weight",
            "head.weight", "head.bias"]
    mixer = ["A_log", "D", "A_b_log", "D_b", "in_proj.weight", "conv1d.weight", "conv1d.bias",
             "x_proj.weight",
             "dt_proj.weight", "dt_proj.bias", "conv1d_b.weight", "conv1d_b.bias", "x_proj_b.weight",
             "dt_proj_b.weight", "dt_proj_b.bias", "out_proj.weight"]
    for i in range(depth):
        keys += [f"layers.{i}.mixer.{k}" for k in mixer] + [f"layers.{i}.norm.weight"]
    return keys


def test_forward_shapes_two_resolutions():
    model = timm.create_model("vim_nano_patch4_32", depth=2, num_classes=7).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    assert model.forward_features(x).shape == (2, 65, 64)
    big = timm.create_model("vim_nano_patch4_32", depth=2, num_classes=7, img_size=48)
    assert big.pos_embed.shape == (1, 145, 64)
    assert big.forward_features(torch.randn(2, 3, 48, 48)).shape == (2, 145, 64)
    assert big(torch.randn(1, 3, 48, 48)).shape == (1, 7)
    with pytest.raises(ValueError, match="dynamic_img_size"):
        model(torch.randn(1, 3, 48, 48))


def test_stride8_grid_and_readout_position():
    model = tiny(stride=4).eval()  # patch 8 stride 4 on 32x32: (32-8)//4+1 = 7 -> 49 tokens + cls
    assert model.patch_embed.grid_size == (7, 7)
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 50, 32)
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), feats[:, 24])


def test_dynamic_img_size():
    model = tiny(dynamic_img_size=True).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), tiny()(x))  # same seed, native size: identical
    assert model.forward_features(torch.randn(2, 3, 48, 40)).shape == (2, 6 * 5 + 1, 32)
    assert model(torch.randn(1, 3, 56, 56)).shape == (1, 10)


def test_resample_pos_embed_keeps_middle_cls():
    pos = torch.randn(1, 17, 8)  # 4x4 grid, cls at 8
    out = resample_pos_embed_mid_cls(pos, (6, 6), (4, 4))
    assert out.shape == (1, 37, 8)
    torch.testing.assert_close(out[:, 18], pos[:, 8])
    grid = resample_abs_pos_embed(torch.cat([pos[:, :8], pos[:, 9:]], 1), [6, 6], [4, 4], num_prefix_tokens=0)
    torch.testing.assert_close(torch.cat([out[:, :18], out[:, 19:]], 1), grid)
    assert resample_pos_embed_mid_cls(pos, (4, 4), (4, 4)) is pos


def test_features_only():
    model = timm.create_model("vim_nano_patch4_32", features_only=True, out_indices=(1, 3))
    assert len(model.model.layers) == 4  # pruned after the last requested block
    assert model.feature_info.channels() == [64, 64] and model.feature_info.reduction() == [4, 4]
    feats = model(torch.randn(2, 3, 32, 32))
    assert [f.shape for f in feats] == [(2, 64, 8, 8)] * 2


def test_forward_intermediates():
    model = tiny(depth=3).eval()
    x = torch.randn(2, 3, 32, 32)
    final, inter = model.forward_intermediates(x, indices=2, norm=True)
    assert len(inter) == 2 and all(t.shape == (2, 32, 4, 4) for t in inter)
    ff = model.forward_features(x)
    torch.testing.assert_close(final, ff)
    patches = torch.cat([ff[:, :8], ff[:, 9:]], 1)  # cls at M//2 = 8 removed
    torch.testing.assert_close(inter[-1], patches.transpose(1, 2).reshape(2, 32, 4, 4))
    nlc = model.forward_intermediates(x, indices=[0], output_fmt="NLC", intermediates_only=True)
    assert len(nlc) == 1 and nlc[0].shape == (2, 16, 32)
    with_cls = model.forward_intermediates(x, indices=[-1], norm=True, return_prefix_tokens=True,
                                           intermediates_only=True)
    torch.testing.assert_close(with_cls[0][1][:, 0], model.forward_head(ff, pre_logits=True))


def test_few_adamw_steps_lower_the_loss():
    model = tiny().train()
    nwd = model.no_weight_decay()
    assert {"pos_embed", "cls_token", "layers.0.mixer.A_log", "layers.1.mixer.D_b"} <= nwd
    losses = adamw_losses(model, 32, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


def test_checkpoint_filter_official_keys_and_grid_change(tmp_path):
    src = tiny(seed=1)
    sd = src.state_dict()
    assert sorted(sd) == sorted(official_keys(2))
    ckpt = {"model": dict(sd), "model_ema": {k: torch.zeros_like(v) for k, v in sd.items()},
            "optimizer": {}, "epoch": 299}
    ckpt["model"]["rope.freqs_cos"] = torch.zeros(3)  # safe to drop; no rope in released models
    dst = tiny(seed=2, img_size=48)  # 6x6 grid
    out = checkpoint_filter_fn(ckpt, dst)
    dst.load_state_dict(out, strict=True)
    torch.testing.assert_close(dst.pos_embed[:, 18], src.pos_embed[:, 8])  # cls slot, not index 0
    torch.testing.assert_close(dst.layers[1].mixer.dt_proj_b.weight, src.layers[1].mixer.dt_proj_b.weight)
    # our own state dict passes through unchanged
    same = checkpoint_filter_fn(src.state_dict(), src)
    assert all(torch.equal(same[k], v) for k, v in sd.items())
    # end to end through timm's pretrained loader
    path = tmp_path / "vim_nano_official.pth"
    nano = timm.create_model("vim_nano_patch4_32", depth=2)
    torch.save({"model": nano.state_dict(), "epoch": 1}, path)
    big = timm.create_model("vim_nano_patch4_32", depth=2, img_size=48, pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(big.pos_embed[:, 72], nano.pos_embed[:, 32])
    torch.testing.assert_close(big.head.weight, nano.head.weight)


def test_grad_checkpointing_same_grads():
    model = tiny(drop_path_rate=0.0).train()
    x = torch.randn(2, 3, 32, 32)

    def grads():
        model.zero_grad()
        model(x).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.set_grad_checkpointing(True)
    ckpt = grads()
    for n, g in plain.items():
        torch.testing.assert_close(ckpt[n], g, msg=n)


def test_torch_and_reference_backends_agree():
    ref = tiny(backend="reference").double().eval()
    fast = tiny(backend="torch").double().eval()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    y_ref, y = ref(x), fast(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


def test_misc_api():
    model = tiny()
    assert model.num_features == 32 and model.get_classifier().out_features == 10
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 32)
    model.reset_classifier(3, "avg")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    matcher = model.group_matcher()
    assert set(matcher) == {"stem", "blocks"}
    assert [f["module"] for f in model.feature_info] == ["layers.0", "layers.1"]


def test_load_official_checkpoint_allows_namespace_only(tmp_path):
    import argparse
    import pickle

    from visionssm.models.vim import checkpoint_filter_fn, load_official_checkpoint

    model = timm.create_model("vim_nano_patch4_32", num_classes=10)
    path = tmp_path / "vim_official.pth"
    torch.save({"model": model.state_dict(), "epoch": 3, "args": argparse.Namespace(lr=1e-3)}, path)
    ckpt = load_official_checkpoint(path)
    assert ckpt["args"].lr == 1e-3
    fresh = timm.create_model("vim_nano_patch4_32", num_classes=10)
    fresh.load_state_dict(checkpoint_filter_fn(ckpt, fresh), strict=True)
    assert torch.equal(fresh.pos_embed, model.pos_embed)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"model": {}, "x": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError):
        load_official_checkpoint(bad)
