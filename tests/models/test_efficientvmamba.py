"""EfficientVMamba: shapes at two resolutions (odd maps for the atrous scan), features API, a few optimisation
steps, conversion of the official checkpoint layout, torch vs Triton paths."""

import re

import timm
import torch

from visionssm.models.efficientvmamba import EfficientVMamba, checkpoint_filter_fn

from ._steps import adamw_losses

TINY = dict(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), d_state=4, num_classes=10)
_TO_OFFICIAL = {"conv_pw.": "conv_pw.0.", "bn1.": "conv_pw.1.", "conv_dw.": "conv_dw.0.", "bn2.": "conv_dw.1.",
                "conv_pwl.": "conv_pw2.0.", "bn3.": "conv_pw2.1."}


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return EfficientVMamba(**{**TINY, **kw})


def to_official_names(model):
    """Our keys -> TerryPei/EfficientVMamba's: conv stages are Sequential(Permute, IR..., Permute, downsample)."""
    out = {}
    for k, v in model.state_dict().items():
        m = re.match(r"^layers\.([23])\.(blocks\.(\d+)|downsample)\.(.*)$", k)
        if m:
            i, rest = int(m.group(1)), m.group(4)
            if m.group(3) is None:
                k = f"layers.{i}.{len(model.layers[i].blocks) + 2}.{rest}"
            else:
                for ours, theirs in _TO_OFFICIAL.items():
                    if rest.startswith(ours):
                        rest = theirs + rest[len(ours):]
                        break
                k = f"layers.{i}.{int(m.group(3)) + 1}.{rest}"
        out["module.module." + k] = v
    return {"state_dict": out}


def test_forward_shapes_two_resolutions():
    model = tiny().eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert model.forward_features(torch.randn(1, 3, 72, 44)).shape == (1, 64, 3, 2)  # 18x11, 9x6: odd maps


def test_features_only():
    model = timm.create_model("efficientvmamba_tiny", features_only=True, depths=(1, 1, 1, 1))
    assert model.feature_info.channels() == [48, 96, 192, 384]
    assert [f.shape[-1] for f in model(torch.randn(1, 3, 64, 64))] == [16, 8, 4, 2]


def test_few_adamw_steps_lower_the_loss():
    model = tiny().train()
    losses = adamw_losses(model, 32, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


def test_checkpoint_filter_official_layout():
    src = tiny(seed=1).eval()
    ckpt = to_official_names(src)
    assert "module.module.layers.2.1.conv_pw.0.weight" in ckpt["state_dict"]
    assert "module.module.layers.2.4.reduction.weight" in ckpt["state_dict"]  # depth 2 -> index 4
    assert "module.module.layers.0.blocks.0.se.global_reduce.weight" in ckpt["state_dict"]
    dst = tiny(seed=2).eval()
    dst.load_state_dict(checkpoint_filter_fn(ckpt, dst), strict=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(dst(x), src(x))


def test_torch_and_triton_backends_agree(triton_device):
    model = tiny(backend="torch").to(triton_device).eval()
    x = torch.randn(2, 3, 40, 40, device=triton_device)  # stage 1 map 10x10, stage 2 map 5x5 (padded)
    y = model(x)
    for m in model.modules():
        if hasattr(m, "backend"):
            m.backend = "triton"
    torch.testing.assert_close(model(x), y, rtol=1e-4, atol=1e-5)
