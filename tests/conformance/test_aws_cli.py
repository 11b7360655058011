"""The aws CLI, unmodified, pointed at the emulator only by the environment `mf-sm-async local env` prints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AWS = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")


def aws(env: dict, *args: str) -> dict | str:
    result = subprocess.run([AWS, *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout if args[0] == "s3" else json.loads(result.stdout)


@pytest.mark.skipif(AWS is None, reason="the aws CLI is installed by the test extra (awscli)")
def test_aws_cli_invokes_async_and_reads_the_result(deploy, aws_env, tmp_path):
    dep = deploy()
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"op": "echo", "value": "from the aws cli"}))
    aws(aws_env, "s3", "cp", str(payload), f"s3://{dep.bucket}/cli/payload.json")
    described = aws(aws_env, "sagemaker", "describe-endpoint", "--endpoint-name", dep.name)
    assert described["EndpointStatus"] == "InService"
    assert described["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == f"s3://{dep.bucket}/out"

    answer = aws(aws_env, "sagemaker-runtime", "invoke-endpoint-async", "--endpoint-name", dep.name,
                 "--input-location", f"s3://{dep.bucket}/cli/payload.json", "--content-type", "application/json",
                 "--inference-id", "cli-1")
    assert answer["InferenceId"] == "cli-1"
    assert answer["OutputLocation"] == f"s3://{dep.bucket}/out/cli-1.out"
    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Completed"
    result = tmp_path / "result.json"
    aws(aws_env, "s3", "cp", answer["OutputLocation"], str(result))
    assert json.loads(result.read_text())["echo"] == "from the aws cli"


@pytest.mark.skipif(AWS is None, reason="the aws CLI is installed by the test extra (awscli)")
def test_aws_cli_sees_the_validation_error(deploy, aws_env):
    dep = deploy()
    result = subprocess.run([AWS, "sagemaker-runtime", "invoke-endpoint-async", "--endpoint-name", dep.name,
                             "--input-location", f"s3://{dep.bucket}/x.json", "--request-ttl-seconds", "30"],
                            env=aws_env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "RequestTTLSeconds" in result.stderr or "requestTTLSeconds" in result.stderr
