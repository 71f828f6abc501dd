"""BiMamba (bimamba v2) vs an explicit re-implementation that flips tensors like the official code,
plus the official init (dt bias range, the zeroed dt_proj_b bias) in a model."""

import math

import pytest
import torch
import torch.nn.functional as F

from visionssm.layers import BiMamba
from visionssm.models import VisionMamba
from visionssm.ops.selective_scan import selective_scan_reference


def flipped_official_style(m: BiMamba, u: torch.Tensor) -> torch.Tensor:
    """Written from the spec (plain_family.md §1.3): the backward branch runs the causal recipe on
    xz.flip(L) with the *_b parameters and its output is flipped back; out_proj((y_f + y_b) / 2)."""
    batch, length, _ = u.shape
    xz = (m.in_proj.weight @ u.reshape(-1, u.shape[-1]).T).reshape(-1, batch, length).transpose(0, 1)

    def branch(xz, conv, x_proj, dt_proj, A_log, D):
        x, z = xz.chunk(2, dim=1)
        x = F.silu(F.conv1d(x, conv.weight, conv.bias, padding=m.d_conv - 1, groups=m.d_inner)[..., :length])
        x_dbl = x.transpose(1, 2) @ x_proj.weight.T
        dt, B, C = x_dbl.split([m.dt_rank, m.d_state, m.d_state], dim=-1)
        delta = (dt @ dt_proj.weight.T).transpose(1, 2)
        return selective_scan_reference(x, delta, -torch.exp(A_log), B.transpose(1, 2), C.transpose(1, 2), D,
                                        z=z, delta_bias=dt_proj.bias, delta_softplus=True)

    y_f = branch(xz, m.conv1d, m.x_proj, m.dt_proj, m.A_log, m.D)
    y_b = branch(xz.flip(-1), m.conv1d_b, m.x_proj_b, m.dt_proj_b, m.A_b_log, m.D_b).flip(-1)
    return ((y_f + y_b) / 2).transpose(1, 2) @ m.out_proj.weight.T


def random_mixer(backend, seed=0, **kw):
    torch.manual_seed(seed)
    m = BiMamba(16, d_state=4, backend=backend, **kw).double()
    with torch.no_grad():  # move every parameter off its structured init so that all paths matter
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_matches_flipping_implementation(backend):
    m = random_mixer(backend)
    u = torch.randn(2, 9, 16, dtype=torch.float64, requires_grad=True)
    y = m(u)
    y_ref = flipped_official_style(m, u)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    gy = torch.randn_like(y)
    params = [u, *m.parameters()]
    for g, g_ref in zip(torch.autograd.grad(y, params, gy), torch.autograd.grad(y_ref, params, gy)):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


def test_backward_branch_matters_and_is_anticausal():
    """Perturbing the last token changes the first output only through the backward branch."""
    m = random_mixer("reference", seed=1)
    u = torch.randn(1, 8, 16, dtype=torch.float64)
    u2 = u.clone()
    u2[:, -1] += 1.0
    assert (m(u2)[:, 0] - m(u)[:, 0]).abs().max() > 1e-6
    with torch.no_grad():
        m.out_proj.weight.zero_()
    assert m(u).abs().max() == 0


def test_divide_out_halves():
    m = random_mixer("reference", seed=2)
    u = torch.randn(1, 5, 16, dtype=torch.float64)
    y = m(u)
    m.divide_out = False
    torch.testing.assert_close(m(u), 2 * y)


def test_standalone_init():
    m = BiMamba(32, d_state=8)
    e, r = m.d_inner, m.dt_rank
    assert (e, r) == (64, 2)
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.x_proj.bias is None
    want_a = torch.log(torch.arange(1, 9, dtype=torch.float32)).expand(e, -1)
    torch.testing.assert_close(m.A_log.data, want_a)
    torch.testing.assert_close(m.A_b_log.data, want_a)
    assert torch.all(m.D == 1) and torch.all(m.D_b == 1)
    assert all(getattr(p, "_no_weight_decay", False) for p in (m.A_log, m.A_b_log, m.D, m.D_b))
    assert m.dt_proj.weight.abs().max() <= r**-0.5
    assert m.dt_proj.bias._no_reinit and not getattr(m.dt_proj_b.bias, "_no_reinit", False)
    assert m.dt_proj_b.bias.abs().max() > 0  # PyTorch default until the model-level init zeroes it


def test_model_init_quirks():
    depth = 3
    torch.manual_seed(0)
    model = VisionMamba(img_size=16, patch_size=8, embed_dim=32, depth=depth, d_state=8, num_classes=5)
    for blk in model.layers:
        mx = blk.mixer
        assert torch.all(mx.dt_proj_b.bias == 0)  # official quirk: zeroed by VisionMamba's init
        dt = F.softplus(mx.dt_proj.bias.detach())
        assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
        assert dt.std() > 0
        # out_proj: kaiming-uniform(a=sqrt 5) bound 1/sqrt(fan_in), divided by sqrt(depth)
        bound = 1 / math.sqrt(mx.d_inner) / math.sqrt(depth)
        w = mx.out_proj.weight.abs().max().item()
        assert 0.8 * bound < w <= bound
        assert torch.all(blk.norm.weight == 1)
    assert torch.all(model.head.bias == 0) and torch.all(model.patch_embed.proj.bias == 0)
    assert torch.all(model.norm_f.weight == 1)


def test_triton_path_runs_one_bidirectional_launch_and_matches_torch(triton_device, monkeypatch):
    """On the Triton path both directions go through one bidirectional scan launch (BIDIR kernels); output and
    input/parameter grads match the torch path."""
    import visionssm.ops.selective_scan.triton_scan as ts

    torch.manual_seed(4)
    m = BiMamba(8, d_state=16).to(triton_device)
    u = torch.randn(2, 13, 8, device=triton_device, requires_grad=True)
    y = m(u)
    grads = torch.autograd.grad(y.square().sum(), [u, *m.parameters()])
    launches = []
    kernel = ts.selective_scan_fwd_kernel

    class Spy:
        def __getitem__(self, grid):
            def run(*args, **kw):
                launches.append(kw["BIDIR"])
                return kernel[grid](*args, **kw)
            return run

    monkeypatch.setattr(ts, "selective_scan_fwd_kernel", Spy())
    m.backend = "triton"
    y_t = m(u)
    grads_t = torch.autograd.grad(y_t.square().sum(), [u, *m.parameters()])
    assert launches == [True] or launches == [True, True]  # MODE=1 + MODE=0 when the sequence is segmented
    torch.testing.assert_close(y_t, y, rtol=1e-4, atol=1e-5)
    for (name, _), a, b in zip([("u", None), *m.named_parameters()], grads_t, grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
