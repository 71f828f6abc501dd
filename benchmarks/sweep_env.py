"""Shared by the sweep scripts: a variant is a ';'-separated list of KEY=VALUE settings of one env prefix."""

from __future__ import annotations

import os


def apply_variant(prefix: str, variant: str) -> None:
    """Clear every ``prefix*`` variable, then set ``prefix + KEY = VALUE`` for each item of ``variant``."""
    for k in [k for k in os.environ if k.startswith(prefix)]:
        del os.environ[k]
    for item in filter(None, variant.split(";")):
        k, v = item.split("=", 1)
        os.environ[prefix + k] = v
