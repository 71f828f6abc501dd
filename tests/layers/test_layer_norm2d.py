import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d as TimmLayerNorm2d

from visionssm.layers.layer_norm2d import LayerNorm2d


def _pair(c=8):
    ours, timm_ln = LayerNorm2d(c), TimmLayerNorm2d(c)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    timm_ln.load_state_dict(ours.state_dict())  # same keys as timm's
    return ours, timm_ln


def test_autocast_keeps_16bit_dtype_and_float32_values():
    ours, _ = _pair()
    x = torch.randn(2, 8, 5, 6).to(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    want = F.layer_norm(x.detach().float().permute(0, 2, 3, 1), (8,), ours.weight, ours.bias, ours.eps)
    want = want.permute(0, 3, 1, 2)
    # one bf16 rounding of the float32 result (the affine weights stay float32)
    assert (y.float() - want).abs().max() <= 2 ** -7 * want.abs().max()
    y.float().square().sum().backward()
    assert ours.weight.grad.dtype == torch.float32 and ours.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_without_autocast_equals_timm():
    ours, timm_ln = _pair()
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(2, 8, 4, 4, dtype=dtype)
        o, t = ours.to(dtype), timm_ln.to(dtype)
        assert torch.equal(o(x), t(x))
