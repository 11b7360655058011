"""The sagemaker SDK v2 examples' environment: only what ``mf-sm-async local env`` exports, and no network.

These tests need ``sagemaker<3`` (v3 removed v2's ``Model`` / ``Predictor`` / ``AsyncPredictor``), so they run
in a virtual environment of their own (``requirements.txt``; ``make_venv.py`` builds it). The main test run
(sagemaker 3) does not collect them itself: ``tests/conformance/test_sagemaker_sdk_v2.py`` runs them there and
fails when they fail or do not run.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

import pytest


def _sagemaker_major() -> int | None:
    try:
        return int(version("sagemaker").split(".")[0])
    except PackageNotFoundError:
        return None


if _sagemaker_major() != 2:
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config):
    # v2's get_result(WaiterConfig) polls the output and the failure location from two threads and leaves the
    # loser polling until its attempts run out; when the emulator stops at the end of the session those
    # threads die of a connection error. That is the SDK's design, not a failure (a result that does not
    # arrive fails the test through get_result itself).
    config.addinivalue_line("filterwarnings", "ignore::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture(scope="session")
def user_env(tmp_path_factory):
    """``eval "$(mf-sm-async local env)"`` for this process; stops the emulator afterwards if it started it."""
    from tests.sdk_v2.user_env import USER_AWS_VARIABLES, exported_env, isolate, local

    started_here = local("status").returncode != 0
    env = isolate(exported_env(), str(tmp_path_factory.mktemp("aws-home")))
    saved = {key: os.environ.get(key) for key in (*env, *USER_AWS_VARIABLES)}
    for key in USER_AWS_VARIABLES:
        os.environ.pop(key, None)
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    if started_here:
        local("stop")


@pytest.fixture(autouse=True)
def offline(monkeypatch, user_env):
    """Every test: no host name but loopback may be resolved, and none was."""
    import socket

    from tests.sdk_v2.user_env import Offline

    guard = Offline()
    monkeypatch.setattr(socket, "getaddrinfo", guard.getaddrinfo)
    yield guard.attempts
    assert guard.attempts == [], f"the SDK tried to reach the network: {guard.attempts}"
