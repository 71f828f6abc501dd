import sys, os, torch
sys.path.insert(0, 'benchmarks')
from bench_scan import make_inputs, time_fn
from visionssm.ops.selective_scan import selective_scan
ours = lambda **kw: selective_scan(**kw, delta_softplus=True, backend="triton")
for shape in [(128, 384, 197, 16), (8, 384, 6085, 16)]:
    x = make_inputs(*shape, torch.bfloat16)
    tm = dict(x)
    for k in ('u', 'delta', 'z'):
        tm[k] = x[k].transpose(1, 2).contiguous().transpose(1, 2)
    print(shape, 'channel-major fwd %.3f' % time_fn(ours, x, False), 'token-major fwd %.3f' % time_fn(ours, tm, False), flush=True)
