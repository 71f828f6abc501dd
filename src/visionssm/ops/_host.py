"""Host-side helpers of the op wrappers: what runs in Python before every kernel launch is kept cheap.

Small problems are launch-bound, and timing loops (do_bench) see every microsecond between an op's start and its
last launch. Triton's cdiv / next_power_of_2 are constexpr functions (about a microsecond per Python call, more on
a slow host); these are plain arithmetic. Launch configurations are cached on their arguments and on the
``VISIONSSM_*`` variables that override them.
"""

from __future__ import annotations

import functools
import os


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def strides(t, n: int = 3) -> tuple:
    """t's strides, or n zeros for an absent optional tensor (its kernel argument is never read)."""
    return t.stride() if t is not None else (0,) * n


# os.environ's own store (POSIX: encoded keys and values). Its Mapping methods cost ~5 Python calls per read,
# and an op reads several variables per call; os.environ writes (monkeypatch too) update this dict as well.
_ENV = getattr(os.environ, "_data", None) if os.name == "posix" else None
_ENV_KEYS: dict = {}


def env_get(name: str, default=None):
    """``os.environ.get(name, default)`` in one dict lookup."""
    if _ENV is None:
        return os.environ.get(name, default)
    key = _ENV_KEYS.get(name)
    if key is None:
        key = _ENV_KEYS[name] = os.environ.encodekey(name)
    value = _ENV.get(key)
    return default if value is None else os.environ.decodevalue(value)


def cached_on_env(*names: str):
    """Memoise a pure launch-config function on its arguments and the current values of env variables ``names``
    (the ones it reads), so a changed override still takes effect. Results are shared: return tuples, or dicts
    that callers only unpack."""

    def deco(fn):
        @functools.lru_cache(maxsize=1024)
        def cached(env, *args, **kwargs):
            return fn(*args, **kwargs)

        keys = tuple(os.environ.encodekey(n) for n in names) if _ENV is not None else ()

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            env = tuple(map(_ENV.get, keys)) if _ENV is not None else tuple(os.environ.get(n) for n in names)
            return cached(env, *args, **kwargs)

        return wrapper

    return deco
