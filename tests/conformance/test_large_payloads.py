"""A 1 GiB payload round trip through unmodified boto3: multipart upload into the emulator's S3,
InvokeEndpointAsync by InputLocation, the model reads every byte. The daemon streams it (its memory
grows far less than the payload); the model server, like any SageMaker container, receives it whole."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

GIB = 1 << 30


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_one_gib_payload_round_trip_with_bounded_daemon_memory(deploy, emulator, tmp_path):
    dep = deploy("sha256", max_concurrent=1)
    payload = tmp_path / "payload.bin"
    digest = hashlib.sha256()
    with open(payload, "wb") as out:
        block = os.urandom(1 << 20)
        for i in range(GIB >> 20):
            chunk = block[:-4] + i.to_bytes(4, "big")
            digest.update(chunk)
            out.write(chunk)
    before = peak_rss_mb(emulator["pid"])

    dep.clients.s3.upload_file(str(payload), dep.bucket, "big/payload.bin")
    assert dep.clients.s3.head_object(Bucket=dep.bucket, Key="big/payload.bin")["ContentLength"] == GIB
    answer = dep.clients.sagemaker_runtime.invoke_endpoint_async(
        EndpointName=dep.name, InputLocation=f"s3://{dep.bucket}/big/payload.bin",
        ContentType="application/octet-stream", InvocationTimeoutSeconds=600)
    [note] = dep.notifications(1, timeout=300)
    assert note["invocationStatus"] == "Completed", note.get("failureReason")
    assert json.loads(dep.read(answer["OutputLocation"])) == {"bytes": GIB, "sha256": digest.hexdigest()}
    assert peak_rss_mb(emulator["pid"]) - before < 300
