"""The SDPA / naive switch really changes the attention path of a built timm model, and only that."""

import pytest
import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from visionssm.bench import attention_impl, build_model, has_attention, set_attention
from visionssm.bench.throughput import timm_fused_attn


class _AtenOps(TorchDispatchMode):
    """Records the aten ops a forward dispatches."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__)
        return func(*args, **(kwargs or {}))


def _ops(model, x):
    with torch.no_grad(), _AtenOps() as rec:
        y = model(x)
    return y, rec.names


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_model("vit_tiny_patch16_224", 32, torch.device("cpu")).eval()


def test_switch_changes_the_attention_kernel_not_the_result(vit):
    x = torch.randn(2, 3, 32, 32)
    assert set_attention(vit, "naive") == 12  # one attention module per block
    assert attention_impl(vit) == "naive"
    y_naive, ops_naive = _ops(vit, x)
    assert set_attention(vit, "sdpa") == 12
    assert attention_impl(vit) == "sdpa"
    y_sdpa, ops_sdpa = _ops(vit, x)
    sdpa_ops = {n for n in ops_sdpa if "scaled_dot_product" in n}
    assert sdpa_ops and not any("scaled_dot_product" in n for n in ops_naive)
    assert any("softmax" in n for n in ops_naive) and not any("softmax" in n for n in ops_sdpa)
    torch.testing.assert_close(y_sdpa, y_naive, rtol=1e-4, atol=1e-5)


def test_build_model_applies_the_choice_and_restores_timm_global():
    from timm.layers import use_fused_attn

    before = (use_fused_attn(), use_fused_attn(experimental=True))
    m = build_model("vit_tiny_patch16_224", 32, torch.device("cpu"), attention="naive")
    assert attention_impl(m) == "naive"
    assert (use_fused_attn(), use_fused_attn(experimental=True)) == before
    with timm_fused_attn(False):
        assert not use_fused_attn()
    assert (use_fused_attn(), use_fused_attn(experimental=True)) == before


def test_models_without_attention_are_left_alone():
    m = timm.create_model("vim_nano_patch4_32")
    assert not has_attention(m) and attention_impl(m) is None
    assert set_attention(m, "naive") == 0


def test_bad_impl_is_rejected(vit):
    with pytest.raises(ValueError, match="attention must be one of"):
        set_attention(vit, "flash")
