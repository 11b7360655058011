"""Notebook tests: each module runs its own emulator daemon in a temporary MF_SM_ASYNC_HOME (time scale
60) and stops it at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mf_sm_async.local import daemon

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def sm_home(tmp_path_factory):
    """A temporary MF_SM_ASYNC_HOME, set in os.environ for the module (child processes inherit it)."""
    home = tmp_path_factory.mktemp("mf-sm-async")
    names = ("MF_SM_ASYNC_HOME", "MF_SM_ASYNC_TIME_SCALE", "MF_SM_ASYNC_TARGET")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(MF_SM_ASYNC_HOME=str(home), MF_SM_ASYNC_TIME_SCALE="60")
    os.environ.pop("MF_SM_ASYNC_TARGET", None)
    yield home
    daemon.stop(home / "local")
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
