"""VSSD: shapes at two resolutions, official key names and checkpoint conversion, features API, a few
optimisation steps, grad checkpointing, backends, stage structure."""

import pytest
import timm
import torch

from visionssm.layers import NCSSD
from visionssm.models.vssd import VSSD, Attention, checkpoint_filter_fn

from ._steps import adamw_losses, grads_with_and_without_checkpointing

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), d_state=8, num_classes=10)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return VSSD(**{**TINY, **kw})


def official_keys(depths, stages=4):
    """State-dict keys of YuHengsss/VSSD VMAMBA2 (classification/models/mamba2.py, mamba_util.py)."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["patch_embed.conv1.conv.weight"] + [f"patch_embed.conv1.norm.{b}" for b in bn]
    for mod in ("conv2.0", "conv2.1", "conv3.0", "conv3.1"):
        keys += [f"patch_embed.{mod}.conv.weight"] + [f"patch_embed.{mod}.norm.{b}" for b in bn]
    ssd = ["in_proj.weight", "conv2d.weight", "conv2d.bias", "dt_bias", "A_log", "D", "norm.weight", "norm.bias",
           "out_proj.weight"]
    attn = ["to_qkv.weight", "to_out.weight", "to_out.bias"]
    for i in range(stages):
        for j in range(depths[i]):
            p = f"layers.{i}.blocks.{j}."
            keys += [p + k for k in ("cpe1.weight", "cpe1.bias", "norm1.weight", "norm1.bias", "cpe2.weight",
                                     "cpe2.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                                     "mlp.fc2.weight", "mlp.fc2.bias")]
            keys += [p + "attn." + k for k in (ssd if i < stages - 1 else attn)]
        if i < stages - 1:
            d = f"layers.{i}.downsample.conv."
            keys += [d + k for k in ("0.conv.weight", "0.conv.bias", "1.conv.weight", "1.conv.bias",
                                     "2.conv.weight", "2.conv.bias")]
            keys += [d + f"2.norm.{b}" for b in bn]
    return keys + ["norm.weight", "norm.bias", "head.weight", "head.bias"]


def test_forward_shapes_two_resolutions():
    model = tiny().eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert model.forward_features(torch.randn(2, 3, 64, 64)).shape == (2, 2, 2, 128)  # NHWC, /32
    assert model.forward_features(torch.randn(1, 3, 96, 64)).shape == (1, 3, 2, 128)
    assert model(torch.randn(1, 3, 96, 64)).shape == (1, 10)
    assert model.forward_head(model.forward_features(torch.randn(1, 3, 64, 64)), pre_logits=True).shape == (1, 128)


def test_stage_structure_follows_the_official_configs():
    model = tiny()
    mixers = [type(stage.blocks[0].attn) for stage in model.layers]
    assert mixers == [NCSSD, NCSSD, NCSSD, Attention]  # ATTN_TYPES = mamba2 x3, standard
    heads = [(s.blocks[0].attn.nheads, s.blocks[0].attn.headdim) for s in model.layers[:3]]
    assert heads == [(1, 32), (2, 32), (2, 64)]  # headdim = dim * expand / num_heads
    assert model.layers[3].blocks[0].attn.num_heads == 4 and model.layers[3].downsample is None
    with torch.device("meta"):
        tiny_official = timm.create_model("vssd_tiny")
    assert [s.blocks[0].attn.headdim for s in tiny_official.layers[:3]] == [64, 64, 64]
    assert tiny_official.layers[3].blocks[0].attn.to_qkv.weight.shape == (3 * 512, 512)  # 16 heads x 32


def test_official_keys_and_checkpoint_filter(tmp_path):
    src = tiny(seed=1).eval()
    sd = src.state_dict()
    assert sorted(sd) == sorted(official_keys(TINY["depths"]))
    # detection/segmentation backbone layout: backbone. prefix, per-stage outnorm{i}, no head, decoder keys
    det = {"backbone." + k: v for k, v in sd.items() if not k.startswith("head.")}
    det.update({"backbone.outnorm0.weight": torch.ones(16), "decode_head.conv_seg.weight": torch.zeros(3)})
    headless = tiny(seed=2, num_classes=0)
    missing = headless.load_state_dict(checkpoint_filter_fn({"state_dict": det}, headless), strict=True)
    assert not missing.missing_keys
    # classification checkpoint with DDP prefix into a model with another number of classes: head dropped
    other = tiny(seed=3, num_classes=7)
    out = checkpoint_filter_fn({"model": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, other)
    assert "head.weight" not in out
    other.load_state_dict(out, strict=False)
    torch.testing.assert_close(other.layers[2].blocks[1].attn.A_log, src.layers[2].blocks[1].attn.A_log)
    same = checkpoint_filter_fn(sd, src)
    assert all(torch.equal(same[k], v) for k, v in sd.items())
    path = tmp_path / "vssd_official.pth"
    torch.save({"model": sd}, path)
    model = timm.create_model("vssd_tiny", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **TINY).eval()
    x = torch.randn(1, 3, 64, 64)  # timm re-initialises the head (10 != 1000 classes); the trunk is loaded
    torch.testing.assert_close(model.forward_features(x), src.forward_features(x))


def test_features_only_and_intermediates():
    model = timm.create_model("vssd_tiny", features_only=True, out_indices=(1, 2), **TINY)
    assert model.feature_info.channels() == [32, 64] and model.feature_info.reduction() == [8, 16]
    assert [f.shape for f in model(torch.randn(2, 3, 64, 64))] == [(2, 32, 8, 8), (2, 64, 4, 4)]
    assert len(model.model.layers) == 3
    net = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    final, inter = net.forward_intermediates(x, norm=True)
    assert [t.shape for t in inter] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]
    torch.testing.assert_close(final, net.forward_features(x))
    torch.testing.assert_close(inter[-1].permute(0, 2, 3, 1), final)
    nhwc = net.forward_intermediates(x, indices=[0], output_fmt="NHWC", stop_early=True, intermediates_only=True)
    assert len(nhwc) == 1 and nhwc[0].shape == (2, 16, 16, 16)


def test_few_adamw_steps_lower_the_loss():
    model = tiny(drop_path_rate=0.1).train()
    assert {"layers.0.blocks.0.attn.A_log", "layers.2.blocks.1.attn.dt_bias"} <= model.no_weight_decay()
    losses = adamw_losses(model, 64, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


def test_grad_checkpointing_same_grads():
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    plain, ckpt = grads_with_and_without_checkpointing(model, x)
    assert plain.keys() == ckpt.keys() and len(plain) > 80
    for n, g in plain.items():
        torch.testing.assert_close(ckpt[n], g, msg=n)


def test_torch_and_reference_backends_agree_float64():
    ref = tiny(backend="reference").double().eval()
    fast = tiny(backend="torch").double().eval()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    y_ref, y = ref(x), fast(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


def test_torch_and_triton_backends_agree():
    base = tiny(backend="torch").eval()
    other = tiny(backend="triton").eval()
    other.load_state_dict(base.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(other(x), base(x), rtol=1e-5, atol=1e-5)


def test_misc_api():
    model = tiny()
    assert model.num_features == 128 and model.get_classifier().out_features == 10
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 128)
    model.reset_classifier(3, "")
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 2, 3)  # global_pool="": the head maps every position
    assert set(model.group_matcher()) == {"stem", "blocks"}
    assert [f["module"] for f in model.feature_info] == ["layers.0", "layers.1", "layers.2", "layers.3"]
    with pytest.raises(ValueError, match="attn_type"):
        tiny(attn_types=("ncssd", "ncssd", "ncssd", "window"))


@pytest.mark.gpu
def test_gpu_vssd_tiny_backends_and_bf16():
    """Real size on CUDA: default (triton) vs torch backend in fp32, bf16 autocast near fp32, finite grads."""
    torch.manual_seed(0)
    model = timm.create_model("vssd_tiny").cuda().eval()
    torch_path = timm.create_model("vssd_tiny", backend="torch").cuda().eval()
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


def test_training_checkpoint_picks_the_better_recorded_weights():
    """Swin-style 'best EMA' checkpoints hold both weight sets and both best accuracies (key typo as saved)."""
    src, ema = tiny(seed=1), tiny(seed=2)
    ckpt = {"model": src.state_dict(), "model_ema": ema.state_dict(), "max_accuracy": 83.1,
            "max_accuray_ema": 83.6, "optimizer": {}, "epoch": 299}
    dst = tiny(seed=3)
    dst.load_state_dict(checkpoint_filter_fn(ckpt, dst), strict=True)
    assert torch.equal(dst.layers[0].blocks[0].attn.in_proj.weight, ema.layers[0].blocks[0].attn.in_proj.weight)
    ckpt["max_accuray_ema"] = 82.0
    dst.load_state_dict(checkpoint_filter_fn(ckpt, dst), strict=True)
    assert torch.equal(dst.layers[0].blocks[0].attn.in_proj.weight, src.layers[0].blocks[0].attn.in_proj.weight)


def test_load_training_checkpoint_reads_yacs_config_as_data(tmp_path, monkeypatch):
    """Official .pth files pickle a yacs CfgNode; it comes back as an OrderedDict, other classes stay refused."""
    import pickle
    import sys
    import types

    from visionssm.models.vssd import load_training_checkpoint

    class CfgNode(dict):  # what yacs pickles: a dict subclass with a few attributes
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.__dict__["__immutable__"] = True

    yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    CfgNode.__module__, CfgNode.__qualname__, config.CfgNode, yacs.config = "yacs.config", "CfgNode", CfgNode, config
    monkeypatch.setitem(sys.modules, "yacs", yacs)
    monkeypatch.setitem(sys.modules, "yacs.config", config)
    model = tiny()
    path = tmp_path / "vssd_official.pth"
    torch.save({"model": model.state_dict(), "config": CfgNode(MODEL=CfgNode(TYPE="vmamba2")), "epoch": 1}, path)
    monkeypatch.delitem(sys.modules, "yacs.config")
    ckpt = load_training_checkpoint(path)
    assert ckpt["config"]["MODEL"]["TYPE"] == "vmamba2"
    fresh = tiny(seed=5)
    fresh.load_state_dict(checkpoint_filter_fn(ckpt, fresh), strict=True)
    assert torch.equal(fresh.norm.weight, model.norm.weight)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"model": {}, "x": Evil()}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        load_training_checkpoint(bad)
