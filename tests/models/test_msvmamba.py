"""MSVMamba: shapes at two resolutions, features API, a few optimisation steps, official key names,
torch vs Triton paths."""

import timm
import torch

from visionssm.models.msvmamba import MSVMamba
from visionssm.models.vmamba import checkpoint_filter_fn

from ._steps import adamw_losses

TINY = dict(depths=(1, 1, 1, 1), dims=16, num_classes=10)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return MSVMamba(**{**TINY, **kw})


def test_forward_shapes_two_resolutions():
    model = tiny().eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert model.forward_features(torch.randn(1, 3, 96, 80)).shape == (1, 128, 3, 3)  # 80/32 = 2.5 -> padded


def test_official_block_names():
    names = set(tiny().state_dict())
    op = "layers.0.blocks.0.op."
    expected = {op + k for k in ("in_proj.weight", "conv2d.weight", "conv2d.bias", "conv2d_b1.weight",
                                 "conv2d_b1.bias", "x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs",
                                 "Ds", "out_norm.weight", "out_norm.bias", "se.fc.0.weight", "se.fc.2.weight",
                                 "out_proj.weight")}
    expected |= {f"layers.0.blocks.0.convFFN.{m}.{p}" for m in ("linear1", "dwc", "linear2")
                 for p in ("weight", "bias")}
    expected |= {"layers.0.downsample.norm.weight", "layers.0.downsample.reduction.weight", "patch_embed.0.weight"}
    assert expected <= names
    assert tiny().layers[0].blocks[0].op.x_proj_weight.shape == (2, 1 + 2 * 1, 32)  # K=2 sets, R=1, N=1


def test_features_only():
    model = timm.create_model("msvmamba_nano", features_only=True, depths=(1, 1, 1, 1))
    assert model.feature_info.channels() == [48, 96, 192, 384]
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]


def test_few_adamw_steps_lower_the_loss():
    model = tiny().train()
    losses = adamw_losses(model, 32, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


def test_checkpoint_roundtrip_from_training_file():
    src = tiny(seed=1)
    ckpt = {"model_ema": {"module." + k: v for k, v in src.state_dict().items()}, "epoch": 299}
    dst = tiny(seed=2)
    dst.load_state_dict(checkpoint_filter_fn(ckpt, dst), strict=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(dst.eval()(x), src.eval()(x))


def test_torch_and_triton_backends_agree(triton_device):
    model = tiny(dims=8, backend="torch").to(triton_device).eval()
    x = torch.randn(2, 3, 32, 32, device=triton_device)
    y = model(x)
    for m in model.modules():
        if hasattr(m, "backend"):
            m.backend = "triton"
    torch.testing.assert_close(model(x), y, rtol=1e-4, atol=1e-5)
