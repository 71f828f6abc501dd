"""EfficientViM: shapes at two resolutions, equality with timm's independent port on shared weights, official
checkpoint conversion, features API, a few optimisation steps, grad checkpointing, backends."""

import re

import pytest
import timm
import torch

from visionssm.models.efficientvim import EfficientViM, checkpoint_filter_fn

from ._steps import adamw_losses, grads_with_and_without_checkpointing

TINY = dict(embed_dim=(16, 24, 32), depths=(1, 2, 1), state_dim=(4, 3, 2), num_classes=10)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return EfficientViM(**{**TINY, **kw})


def randomize_norms(model):
    """Non-trivial BN statistics and affine params and head weights, so comparisons are not vacuous."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_()
                m.bias.normal_()
        for name, p in model.named_parameters():
            if name.startswith("weights") or name.endswith("alpha"):
                p.normal_()
    return model


def to_official(sd):
    """Our state dict -> the official layout: LayerNorm1D params (1, C, 1), the final LayerNorm2D (1, C, 1, 1)."""
    out = {}
    for k, v in sd.items():
        if re.fullmatch(r"norm\.3\.(weight|bias)", k):
            v = v.reshape(1, -1, 1, 1)
        elif re.fullmatch(r"(norm\.\d|stages\.\d\.blocks\.\d\.norm)\.(weight|bias)", k):
            v = v.reshape(1, -1, 1)
        out[k] = v
    return out


def test_forward_shapes_two_resolutions():
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 10)
    feats = model.forward_features(x)
    assert [f.shape for f in feats] == [(2, 16, 4), (2, 24, 3), (2, 32, 2), (2, 32, 1)]  # h_i (B, D, N); map 1x1
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features) == (2, 16 + 24 + 32 + 32)
    feats = model.forward_features(torch.randn(1, 3, 96, 80))  # non-square: 6x5 -> 3x3 -> 2x2
    assert feats[-1].shape == (1, 32, 4)
    assert model(torch.randn(1, 3, 96, 80)).shape == (1, 10)


@pytest.mark.parametrize("distillation", [False, True])
def test_equals_timm_port_on_the_same_weights(distillation):
    """timm's port (an independent implementation with the official key names) gives the same logits."""
    port = pytest.importorskip("timm.models.efficientvim", reason="this timm has no EfficientViM port")
    ours = randomize_norms(tiny(distillation=distillation)).eval()
    cls = port.EfficientViMDistilled if distillation else port.EfficientViM
    theirs = cls(**TINY).eval()
    theirs.load_state_dict(checkpoint_filter_fn(ours.state_dict(), theirs), strict=True)
    x = torch.randn(2, 3, 64, 80)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    for a, b in zip(ours.forward_features(x), theirs.forward_features(x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_checkpoint_filter_official_layout(tmp_path):
    src = randomize_norms(tiny(seed=1, distillation=True)).eval()
    official = to_official(src.state_dict())
    assert official["norm.0.weight"].shape == (1, 16, 1) and official["norm.3.bias"].shape == (1, 32, 1, 1)
    assert official["stages.0.blocks.0.norm.weight"].shape == (1, 16, 1)
    ckpt = {"model": {k: torch.zeros_like(v) for k, v in official.items()}, "model_ema": official, "epoch": 299}
    plain = tiny(seed=2)  # no distillation heads: heads_dist / weights_dist are dropped
    plain.load_state_dict(checkpoint_filter_fn(ckpt, plain), strict=True)
    torch.testing.assert_close(plain.stages[1].blocks[1].mixer.hz_proj.conv.weight,
                               src.stages[1].blocks[1].mixer.hz_proj.conv.weight)  # EMA weights preferred
    dist = tiny(seed=3, distillation=True).eval()
    dist.load_state_dict(checkpoint_filter_fn({"model": {"module." + k: v for k, v in official.items()}}, dist))
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(dist(x), src(x))
    headless = tiny(num_classes=0)
    headless.load_state_dict(checkpoint_filter_fn(official, headless), strict=True)
    # end to end through timm's pretrained loader
    path = tmp_path / "efficientvim_official.pth"
    torch.save({"model": official}, path)
    model = timm.create_model("visionssm_efficientvim_m1", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                              **TINY)
    torch.testing.assert_close(model.norm[3].weight, src.norm[3].weight)


def test_features_only_and_intermediates():
    model = timm.create_model("visionssm_efficientvim_m1", features_only=True, out_indices=(0, 1), **TINY)
    assert model.feature_info.channels() == [16, 24] and model.feature_info.reduction() == [16, 32]
    assert len(model.model.stages) == 2 and model.model.stages[-1].downsample is None
    assert [f.shape for f in model(torch.randn(2, 3, 64, 64))] == [(2, 16, 4, 4), (2, 24, 2, 2)]
    net = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    final, inter = net.forward_intermediates(x, norm=True)
    assert [t.shape for t in inter] == [(2, 16, 4, 4), (2, 24, 2, 2), (2, 32, 1, 1)]
    feats = net.forward_features(x)
    for a, b in zip(final, feats):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(inter[-1].flatten(2), feats[-1])  # normed last map
    assert len(net.forward_intermediates(x, indices=[0], stop_early=True, intermediates_only=True)) == 1


def test_few_adamw_steps_lower_the_loss():
    model = tiny().train()
    assert "stages.0.blocks.0.mixer.D" in model.no_weight_decay()
    losses = adamw_losses(model, 64, lr=1e-2)
    assert losses[-1] < 0.7 * losses[0], losses


def test_grad_checkpointing_same_grads():
    model = tiny().eval()  # eval: BN uses running stats, so two passes see identical statistics
    x = torch.randn(2, 3, 64, 64)
    plain, ckpt = grads_with_and_without_checkpointing(model, x)
    assert plain.keys() == ckpt.keys() and len(plain) > 50
    for n, g in plain.items():
        torch.testing.assert_close(ckpt[n], g, msg=n)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_backends_agree(backend):
    base = tiny(backend="torch").eval()
    other = tiny(backend=backend).eval()
    other.load_state_dict(base.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(other(x), base(x), rtol=1e-5, atol=1e-5)


def test_misc_api():
    model = tiny().eval()
    assert model.get_classifier() is model.heads and len(model.heads) == 4
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, model.num_features)
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert set(model.group_matcher()) == {"stem", "blocks"}
    assert [f["module"] for f in model.feature_info] == ["stages.0", "stages.1", "stages.2"]
    with pytest.raises(ValueError, match="global_pool"):
        tiny(global_pool="max")
    dist = tiny(distillation=True).train()
    dist.set_distilled_training(True)
    assert isinstance(dist(torch.randn(2, 3, 64, 64)), tuple)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["visionssm_efficientvim_m1", "visionssm_efficientvim_m4"])
def test_gpu_full_size_backends_and_bf16(name):
    """Real size on CUDA: default (triton) vs torch backend in fp32, bf16 autocast near fp32, finite grads."""
    torch.manual_seed(0)
    model = randomize_norms(timm.create_model(name)).cuda().eval()
    torch_path = timm.create_model(name, backend="torch").cuda().eval()
    torch_path.load_state_dict(model.state_dict())
    x = torch.randn(8, 3, 224, 224, device="cuda")
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(y, torch_path(x), rtol=2e-3, atol=2e-3)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y16 = model(x).float()
    assert (y16 - y).abs().max() < 0.05 * y.abs().max() + 0.05
    model.train()
    model(x).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
