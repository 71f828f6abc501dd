"""RMSNorm / add-then-norm (float32 residual stream) and the Vim block's residual arrangement."""

import torch

from visionssm.layers import RMSNorm, VimBlock, add_rms_norm


def test_rms_norm_formula():
    norm = RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(3, 5, 8)
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), want)
    assert norm.weight.shape == (8,) and len(list(norm.parameters())) == 1


def test_add_norm_keeps_residual_fp32():
    norm = RMSNorm(16)
    hidden = torch.randn(2, 4, 16).bfloat16()
    residual = torch.randn(2, 4, 16)
    normed, new_res = norm(hidden, residual)
    assert new_res.dtype == torch.float32 and normed.dtype == torch.bfloat16
    torch.testing.assert_close(new_res, residual + hidden.float())
    torch.testing.assert_close(normed, norm(new_res).bfloat16())
    first_normed, first_res = add_rms_norm(hidden, None, norm.weight)  # first block: residual = hidden
    assert first_res.dtype == torch.float32
    torch.testing.assert_close(first_res, hidden.float())
    assert first_normed.dtype == torch.bfloat16


def test_block_add_norm_mixer_order():
    torch.manual_seed(0)
    blk = VimBlock(16, d_state=4, backend="reference").eval()
    h0, r0 = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    h1, r1 = blk(h0, r0)
    torch.testing.assert_close(r1, r0 + h0)
    torch.testing.assert_close(h1, blk.mixer(blk.norm(r0 + h0)))
    h2, r2 = blk(h0, None)
    torch.testing.assert_close(r2, h0)
    torch.testing.assert_close(h2, blk.mixer(blk.norm(h0)))


def test_block_drop_path_only_on_incoming_hidden():
    blk = VimBlock(16, d_state=4, drop_path=0.999999).train()
    h0, r0 = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    torch.manual_seed(0)
    _, r1 = blk(h0, r0)
    torch.testing.assert_close(r1, r0)  # hidden dropped (all samples at this rate)
    _, r2 = blk(h0, None)
    torch.testing.assert_close(r2, h0)  # first block: no drop path
