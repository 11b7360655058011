"""The sagemaker SDK v2 examples (tests/sdk_v2), run by the main test run in their own virtual environment.

v3 removed v2's ``Model`` / ``Predictor`` / ``AsyncPredictor``, so the examples cannot run beside the main
environment's sagemaker 3. This test builds (or re-uses, see tests/sdk_v2/make_venv.py) the environment .ci/run
prepares, runs the examples there with a fresh emulator home, and fails if any fails, is skipped or did not run.
The examples reach the emulator through this environment's ``mf-sm-async`` (``MF_SM_ASYNC_CLI``), as a user's
second environment would through the command on their PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sdk_v2.make_venv import ensure_venv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "tests" / "sdk_v2"


def example_tests() -> int:
    return sum(len(re.findall(r"^def test_", path.read_text(), re.M)) for path in EXAMPLES.glob("test_*.py"))


@pytest.mark.timeout(1500)
def test_sagemaker_sdk_v2_examples_pass_in_their_own_environment(tmp_path):
    python = ensure_venv()
    # Only what the examples' own fixtures set may point them anywhere: no AWS / SDK settings leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(MF_SM_ASYNC_HOME=str(tmp_path / "home"),
               MF_SM_ASYNC_CLI=shlex.join([sys.executable, "-m", "mf_sm_async.cli"]))
    result = subprocess.run([str(python), "-m", "pytest", str(EXAMPLES), "-q", "-rA", "-p", "no:cacheprovider"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1400)
    report = f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, report
    summary = result.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) == example_tests(), report
    assert not re.search(r"skipped|xfail|xpass|deselected", summary), report
