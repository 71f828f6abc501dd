"""VMamba (v2 and vanilla v0): shapes at two resolutions, features API, a few optimisation steps, checkpoint
conversion from official names (v2, v0 January-2024, one-file), grad checkpointing, backend agreement."""

import re

import pytest
import timm
import torch
import torch.nn.functional as F

from visionssm.models.vmamba import VMamba, checkpoint_filter_fn

from ._steps import adamw_losses

TINY_V2 = dict(depths=(1, 1, 2, 1), dims=16, num_classes=10)
TINY_V0 = dict(TINY_V2, d_state=4, ssm_ratio=2.0, conv_bias=True, gate=True, force_fp32=True, mlp_ratio=0.0,
               stem="v1", downsample="v1")


def tiny(v0=False, seed=0, **kw):
    torch.manual_seed(seed)
    return VMamba(**{**(TINY_V0 if v0 else TINY_V2), **kw})


def official_v2_keys(depths=(1, 1, 2, 1)):
    """Key names of MzeroMiko/VMamba v2 checkpoints (hierarchical_family.md §1.5)."""
    keys = [f"patch_embed.{i}.{p}" for i in (0, 2, 5, 7) for p in ("weight", "bias")]
    block = ["norm.weight", "norm.bias", "op.in_proj.weight", "op.conv2d.weight", "op.x_proj_weight",
             "op.dt_projs_weight", "op.dt_projs_bias", "op.A_logs", "op.Ds", "op.out_norm.weight",
             "op.out_norm.bias", "op.out_proj.weight", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
             "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    for i, depth in enumerate(depths):
        keys += [f"layers.{i}.blocks.{j}.{k}" for j in range(depth) for k in block]
        if i < len(depths) - 1:
            keys += [f"layers.{i}.downsample.{m}.{p}" for m in (1, 3) for p in ("weight", "bias")]
    return keys + ["classifier.norm.weight", "classifier.norm.bias", "classifier.head.weight",
                   "classifier.head.bias"]


def to_january_v0_names(sd):
    """Our (= current official) v0 keys -> the names of the released v0 checkpoints (spec §1.5)."""
    out = {}
    for k, v in sd.items():
        k = k.replace("patch_embed.0.", "patch_embed.proj.").replace("patch_embed.2.", "patch_embed.norm.")
        k = re.sub(r"(blocks\.\d+)\.norm\.", r"\1.ln_1.", k).replace(".op.", ".self_attention.")
        k = k.replace("classifier.norm.", "norm.").replace("classifier.head.", "head.")
        out[k] = v
    return out


@pytest.mark.parametrize("v0", [False, True], ids=["v2", "v0"])
def test_forward_shapes_two_resolutions(v0):
    model = tiny(v0).eval()
    for size, out_hw in ((64, 2), (96, 3)):
        x = torch.randn(2, 3, size, size)
        assert model.forward_features(x).shape == (2, 128, out_hw, out_hw)
        assert model(x).shape == (2, 10)
    assert model(torch.randn(1, 3, 72, 40)).shape == (1, 10)  # odd maps on the way (18x10 -> 9x5 -> ...)


def test_registered_variant_at_224_on_meta():
    with torch.device("meta"):
        model = timm.create_model("vmamba_tiny_s1l8", num_classes=5)
        feats = model.forward_intermediates(torch.zeros(1, 3, 224, 224), intermediates_only=True)
    assert [tuple(f.shape) for f in feats] == [(1, 96, 56, 56), (1, 192, 28, 28), (1, 384, 14, 14), (1, 768, 7, 7)]


@pytest.mark.parametrize("name", ["vmamba_tiny_s1l8", "vanilla_vmamba_tiny"])
def test_features_only(name):
    model = timm.create_model(name, features_only=True, depths=(1, 1, 1, 1), dims=8)
    assert model.feature_info.channels() == [8, 16, 32, 64]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    feats = model(torch.randn(2, 3, 64, 64))
    assert [f.shape for f in feats] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]
    two = timm.create_model(name, features_only=True, out_indices=(1, 2), depths=(1, 1, 1, 1), dims=8)
    assert len(two.model.layers) == 3 and [f.shape[1] for f in two(torch.randn(1, 3, 64, 64))] == [16, 32]


def test_forward_intermediates():
    model = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    final, inter = model.forward_intermediates(x, norm=True)
    torch.testing.assert_close(final, model.forward_features(x))
    torch.testing.assert_close(inter[-1], final)  # the last stage has no downsample; norm applied
    assert [t.shape[1:] for t in inter] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]
    nhwc = model.forward_intermediates(x, indices=[0], output_fmt="NHWC", intermediates_only=True, stop_early=True)
    torch.testing.assert_close(nhwc[0], inter[0].permute(0, 2, 3, 1))


@pytest.mark.parametrize("v0", [False, True], ids=["v2", "v0"])
def test_few_adamw_steps_lower_the_loss(v0):
    model = tiny(v0).train()
    assert {"layers.0.blocks.0.op.A_logs", "layers.3.blocks.0.op.Ds"} <= model.no_weight_decay()
    losses = adamw_losses(model, 32, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


def test_state_dict_has_official_v2_names():
    assert sorted(tiny().state_dict()) == sorted(official_v2_keys())


def test_checkpoint_filter_v0_january_names(tmp_path):
    src = tiny(v0=True, seed=1)
    ckpt = {"model": to_january_v0_names(src.state_dict()), "optimizer": {}, "epoch": 292}
    assert "layers.0.blocks.0.self_attention.x_proj_weight" in ckpt["model"] and "head.weight" in ckpt["model"]
    dst = tiny(v0=True, seed=2)
    dst.load_state_dict(checkpoint_filter_fn(ckpt, dst), strict=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(dst.eval()(x), src.eval()(x))
    # headless model: the head is dropped, everything else loads
    body = tiny(v0=True, num_classes=0)
    body.load_state_dict(checkpoint_filter_fn(ckpt, body), strict=True)
    # through timm's pretrained loader (1000 classes, as in the released files)
    src = tiny(v0=True, seed=5, num_classes=1000).eval()
    path = tmp_path / "vanilla.pth"
    torch.save({"model": to_january_v0_names(src.state_dict())}, path)
    via_timm = timm.create_model("vanilla_vmamba_tiny", pretrained=True, **{**TINY_V0, "num_classes": 1000},
                                 pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(via_timm.eval()(x), src(x))


def test_checkpoint_filter_one_file_names():
    """Root /vmamba.py names: grouped-Linear x_proj/dt_projs and PatchMerging as downsample.1/.2."""
    src = tiny(v0=True, seed=3)
    sd = {}
    for k, v in src.state_dict().items():
        k = k.replace("downsample.norm.", "downsample.1.").replace("downsample.reduction.", "downsample.2.")
        if k.endswith("x_proj_weight") or k.endswith("dt_projs_weight"):
            k, v = k.replace("_weight", ".weight"), v.reshape(-1, v.shape[-1])
        sd["module." + k] = v
    dst = tiny(v0=True, seed=4)
    dst.load_state_dict(checkpoint_filter_fn(sd, dst), strict=True)
    assert torch.equal(dst.layers[2].blocks[1].op.x_proj_weight, src.layers[2].blocks[1].op.x_proj_weight)
    assert torch.equal(dst.layers[0].downsample.reduction.weight, src.layers[0].downsample.reduction.weight)


def test_grad_checkpointing_same_grads():
    model = tiny().train()
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
    ref = tiny(v0=True, backend="reference").double().eval()
    fast = tiny(v0=True, backend="torch").double().eval()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    y_ref, y = ref(x), fast(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


def test_torch_and_triton_backends_agree(triton_device):
    torch.manual_seed(0)
    model = VMamba(depths=(1, 1, 1, 1), dims=8, num_classes=3, backend="torch").to(triton_device).eval()
    x = torch.randn(2, 3, 32, 32, device=triton_device)
    y = model(x)
    for blk in model.modules():
        if hasattr(blk, "backend"):
            blk.backend = "triton"
    torch.testing.assert_close(model(x), y, rtol=1e-4, atol=1e-5)


def test_misc_api():
    model = tiny()
    assert model.num_features == 128 and model.get_classifier().out_features == 10
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 128)
    model.reset_classifier(0, "")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 128, 1, 1)  # unpooled normed map
    model.reset_classifier(3, "avg")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert set(model.group_matcher()) == {"stem", "blocks"}
    assert [f["module"] for f in model.feature_info] == [f"layers.{i}" for i in range(4)]
    with pytest.raises(ValueError, match="global_pool"):
        VMamba(global_pool="max")


def _set_backend(model, backend):
    for m in model.modules():
        if hasattr(m, "backend"):
            m.backend = backend


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["vmamba_tiny_s1l8", "vanilla_vmamba_tiny", "msvmamba_tiny", "efficientvmamba_tiny"])
def test_gpu_full_size_triton_matches_torch_and_backprops(name):
    torch.manual_seed(0)
    model = timm.create_model(name, drop_path_rate=0.0).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.no_grad():
        _set_backend(model, "torch")
        y_ref = model(x)
        _set_backend(model, "triton")
        y = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y16 = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y, y_ref, rtol=1e-3, atol=1e-3)
    assert ((y16.float() - y_ref).norm() / y_ref.norm()).item() < 0.1  # bf16 through the whole network
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(model.train()(x), torch.tensor([1, 2], device="cuda"))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
