"""Benchmarks on one footing for our models and timm's: `visionssm bench` and `visionssm profile`.

attention.py  switch timm attention between SDPA and naive on a built model
throughput.py one measurement (img/s, peak memory) of a model x resolution x batch x dtype x mode
sweep.py      plans and runs sweeps, pairs ours with baselines, the JSON document
report.py     text tables and the JSON file
plots.py      throughput / memory vs resolution PNGs
profile.py    params, FLOPs (scans included) and per-block time of one model
"""

from .attention import attention_impl, has_attention, set_attention
from .throughput import Case, Runner, build_model

__all__ = ["Case", "Runner", "attention_impl", "build_model", "has_attention", "set_attention"]
