"""The README's first command, as a new user runs it: `mf-sm-async demo` on the local emulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from mf_sm_async.local import daemon


def test_demo_scores_digits_on_the_emulator_and_cleans_up(tmp_path):
    env = {**os.environ, "MF_SM_ASYNC_HOME": str(tmp_path)}
    env.pop("MF_SM_ASYNC_TARGET", None)
    try:
        result = subprocess.run([sys.executable, "-m", "mf_sm_async.cli", "demo"], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        accuracy = float(re.search(r"accuracy (\d\.\d+)", result.stdout).group(1))
        assert accuracy > 0.9  # LogisticRegression on digits scores ~0.95; a misaligned result would not
        assert "BatchResult(450 rows, 0 failed" in result.stdout
        assert "warning" not in result.stdout  # every resource it made was deleted
        import boto3

        url = daemon.status(tmp_path / "local")["url"]
        sagemaker = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1",
                                 aws_access_key_id="testing", aws_secret_access_key="testing")
        assert sagemaker.list_endpoints()["Endpoints"] == []
        assert sagemaker.list_models()["Models"] == []
    finally:
        daemon.stop(tmp_path / "local")
