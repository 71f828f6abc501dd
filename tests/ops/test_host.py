"""ops/_host.py: the one-lookup env read and the env-keyed config cache follow os.environ writes."""

from __future__ import annotations

from visionssm.ops._host import cached_on_env, env_get


def test_env_get_follows_os_environ(monkeypatch):
    monkeypatch.delenv("VISIONSSM_TEST_ENV", raising=False)
    assert env_get("VISIONSSM_TEST_ENV", "dflt") == "dflt"
    monkeypatch.setenv("VISIONSSM_TEST_ENV", "on")
    assert env_get("VISIONSSM_TEST_ENV") == "on"
    monkeypatch.delenv("VISIONSSM_TEST_ENV")
    assert env_get("VISIONSSM_TEST_ENV") is None


def test_cached_on_env_recomputes_when_the_variable_changes(monkeypatch):
    calls = []

    @cached_on_env("VISIONSSM_TEST_CFG")
    def cfg(x):
        calls.append(x)
        return x * int(env_get("VISIONSSM_TEST_CFG", "1"))

    monkeypatch.delenv("VISIONSSM_TEST_CFG", raising=False)
    assert cfg(3) == 3 and cfg(3) == 3 and len(calls) == 1  # cached
    monkeypatch.setenv("VISIONSSM_TEST_CFG", "5")
    assert cfg(3) == 15 and len(calls) == 2
