import torch

from visionssm.ops import _flops
from visionssm.ops.selective_scan import selective_scan


def test_selective_scan_flops_are_counted_only_inside_the_context():
    b, d, length, n = 2, 8, 5, 4
    args = [torch.randn(b, d, length), torch.rand(b, d, length), -torch.rand(d, n), torch.randn(b, n, length),
            torch.randn(b, n, length)]
    selective_scan(*args, backend="torch")  # outside: nothing to count into
    with _flops.count_op_flops() as counts:
        selective_scan(*args, D=torch.randn(d), z=torch.randn(b, d, length), backend="torch")
        selective_scan(*args, backend="reference")
    assert counts["selective_scan"] == (9 * b * length * d * n + 2 * b * d * length) + 9 * b * length * d * n


def test_nested_contexts_each_count_their_own_calls():
    b, d, length, n = 1, 4, 3, 2
    args = [torch.randn(b, d, length), torch.rand(b, d, length), -torch.rand(d, n), torch.randn(b, n, length),
            torch.randn(b, n, length)]
    one = 9 * b * length * d * n
    with _flops.count_op_flops() as outer:
        with _flops.count_op_flops() as inner:  # both empty dicts: equal, not identical
            pass
        selective_scan(*args, backend="torch")
    assert outer["selective_scan"] == one and inner["selective_scan"] == 0
