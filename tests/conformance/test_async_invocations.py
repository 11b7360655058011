"""InvokeEndpointAsync through plain boto3, as AWS's asynchronous inference guide uses it."""

from __future__ import annotations

import base64
import json
import time

import pytest
from botocore.exceptions import ClientError


def payload(op="echo", **fields) -> bytes:
    return json.dumps({"op": op, **fields}).encode()


def invoke(dep, body: bytes, **kwargs) -> dict:
    key = f"in/{time.monotonic_ns()}.json"
    dep.clients.s3.put_object(Bucket=dep.bucket, Key=key, Body=body)
    return dep.clients.sagemaker_runtime.invoke_endpoint_async(
        EndpointName=dep.name, InputLocation=f"s3://{dep.bucket}/{key}", ContentType="application/json", **kwargs)


def test_payload_in_s3_is_scored_and_the_result_lands_where_the_answer_said(deploy):
    dep = deploy()
    answer = invoke(dep, payload(value="héllo"), InferenceId="first-request")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["InferenceId"] == "first-request"
    assert answer["OutputLocation"] == f"s3://{dep.bucket}/out/first-request.out"
    assert answer["FailureLocation"] == f"s3://{dep.bucket}/failures/first-request-error.out"

    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Completed"
    assert note["inferenceId"] == "first-request"
    assert note["eventSource"] == "aws:sagemaker" and note["eventName"] == "InferenceResult"
    assert note["requestParameters"]["endpointName"] == dep.name
    assert note["requestParameters"]["inputLocation"].startswith(f"s3://{dep.bucket}/in/")
    assert note["responseParameters"]["outputLocation"] == answer["OutputLocation"]
    assert "responseBody" not in note  # IncludeInferenceResponseIn was not asked for
    result = json.loads(dep.read(answer["OutputLocation"]))
    assert result["echo"] == "héllo"
    assert result["greeting"] == "hello from the model tarball"  # model_fn read the unpacked model dir


def test_inline_body_up_to_128000_bytes_and_not_one_more(deploy):
    dep = deploy()
    runtime = dep.clients.sagemaker_runtime
    body = payload(value="x" * (128_000 - len(payload(value=""))))
    assert len(body) == 128_000
    answer = runtime.invoke_endpoint_async(EndpointName=dep.name, Body=body, ContentType="application/json")
    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Completed"
    assert "inputLocation" not in note["requestParameters"]
    assert len(json.loads(dep.read(answer["OutputLocation"]))["echo"]) == len(body) - len(payload(value=""))
    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint_async(EndpointName=dep.name, Body=body + b" ", ContentType="application/json")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "128000" in error.value.response["Error"]["Message"]


def test_neither_or_both_of_body_and_input_location_is_refused(deploy):
    dep = deploy()
    runtime = dep.clients.sagemaker_runtime
    with pytest.raises(ClientError, match="InputLocation or Body"):
        runtime.invoke_endpoint_async(EndpointName=dep.name, ContentType="application/json")
    with pytest.raises(ClientError, match="mutually exclusive"):
        runtime.invoke_endpoint_async(EndpointName=dep.name, Body=b"{}", InputLocation=f"s3://{dep.bucket}/x")


def test_output_path_extension_and_filename(deploy):
    dep = deploy()
    answer = invoke(dep, payload(value=1), S3OutputPathExtension="run-7/part-3", Filename="result.json")
    assert answer["OutputLocation"] == f"s3://{dep.bucket}/out/run-7/part-3/result.json"
    [note] = dep.notifications(1)
    assert note["responseParameters"]["outputLocation"] == answer["OutputLocation"]
    assert json.loads(dep.read(answer["OutputLocation"]))["echo"] == 1
    keys = [o["Key"] for o in dep.clients.s3.list_objects_v2(Bucket=dep.bucket, Prefix="out/")["Contents"]]
    assert keys == ["out/run-7/part-3/result.json"]


def test_model_error_goes_to_the_failure_path_and_the_error_topic(deploy):
    dep = deploy()
    bad = invoke(dep, payload("raise", value="row-13"), InferenceId="bad-one")
    good = invoke(dep, payload(value="fine"), InferenceId="good-one")
    notes = {n["inferenceId"]: n for n in dep.notifications(2)}
    failed = notes["bad-one"]
    assert failed["invocationStatus"] == "Failed"
    assert failed["responseParameters"]["failureLocation"] == bad["FailureLocation"]
    assert "500" in failed["failureReason"] and "poison payload" in failed["failureReason"]
    error_body = dep.read(bad["FailureLocation"]).decode()
    assert "ValueError" in error_body and "poison payload 'row-13'" in error_body
    assert notes["good-one"]["invocationStatus"] == "Completed"
    assert json.loads(dep.read(good["OutputLocation"]))["echo"] == "fine"
    with pytest.raises(ClientError):
        dep.read(bad["OutputLocation"])  # no half result where the output would have been


def test_failures_go_to_the_output_path_without_s3_failure_path(deploy):
    dep = deploy(failure_path=False)
    bad = invoke(dep, payload("raise", value=0), InferenceId="no-failure-path")
    assert bad["FailureLocation"] == f"s3://{dep.bucket}/out/no-failure-path-error.out"
    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Failed"
    assert "poison payload" in dep.read(bad["FailureLocation"]).decode()


def test_include_inference_response_in_puts_the_body_in_the_notification(deploy):
    dep = deploy(include_response=("SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC"))
    invoke(dep, payload(value="inline me"), InferenceId="ok")
    invoke(dep, payload("raise", value="bad"), InferenceId="bad")
    notes = {n["inferenceId"]: n for n in dep.notifications(2)}
    ok_body = base64.b64decode(notes["ok"]["responseBody"]["content"])
    assert json.loads(ok_body)["echo"] == "inline me"
    assert b"poison payload" in base64.b64decode(notes["bad"]["responseBody"]["content"])


def test_response_over_128_kb_is_not_inlined(deploy):
    dep = deploy(include_response=("SUCCESS_NOTIFICATION_TOPIC",))
    answer = invoke(dep, payload(value="y" * 140_000))
    [note] = dep.notifications(1)
    assert "responseBody" not in note
    assert len(dep.read(answer["OutputLocation"])) > 128 * 1024


def test_invocation_timeout_fails_a_model_that_takes_too_long(deploy):
    dep = deploy()
    slow = invoke(dep, payload("sleep", seconds=4), InvocationTimeoutSeconds=1, InferenceId="slow")
    [note] = dep.notifications(1, timeout=30)
    assert note["inferenceId"] == "slow" and note["invocationStatus"] == "Failed"
    assert "InvocationTimeoutSeconds" in note["failureReason"]
    assert "InvocationTimeoutSeconds" in dep.read(slow["FailureLocation"]).decode()


def test_request_expires_after_its_ttl_when_no_worker_takes_it(deploy):
    # One worker, busy for 4 s; the second request's 60 s TTL is 1 s at the session's time scale of 60.
    dep = deploy(max_concurrent=1)
    invoke(dep, payload("sleep", seconds=4), InferenceId="busy")
    time.sleep(0.2)
    expiring = invoke(dep, payload(value="late"), InferenceId="late", RequestTTLSeconds=60)
    notes = {n["inferenceId"]: n for n in dep.notifications(2, timeout=30)}
    assert notes["late"]["invocationStatus"] == "Failed"
    assert "expired" in notes["late"]["failureReason"].lower()
    assert "RequestTTLSeconds" in dep.read(expiring["FailureLocation"]).decode()
    assert notes["busy"]["invocationStatus"] == "Completed"


@pytest.mark.parametrize("bound", [1, 3])
def test_max_concurrent_invocations_per_instance_is_the_bound_the_model_sees(deploy, bound):
    dep = deploy(max_concurrent=bound)
    answers = [invoke(dep, payload("sleep", seconds=0.4, value=i)) for i in range(3 * bound + 2)]
    dep.notifications(len(answers), timeout=60)
    seen = [json.loads(dep.read(a["OutputLocation"]))["max_in_flight"] for a in answers]
    assert max(seen) == bound


def test_unknown_endpoint_is_a_validation_error(clients):
    with pytest.raises(ClientError) as error:
        clients.sagemaker_runtime.invoke_endpoint_async(EndpointName="no-such-endpoint",
                                                        InputLocation="s3://some-bucket/x")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "no-such-endpoint" in error.value.response["Error"]["Message"]


def test_synchronous_invoke_on_an_async_endpoint_is_refused(deploy):
    dep = deploy()
    with pytest.raises(ClientError) as error:
        dep.clients.sagemaker_runtime.invoke_endpoint(EndpointName=dep.name, Body=payload(),
                                                      ContentType="application/json")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "InvokeEndpointAsync" in error.value.response["Error"]["Message"]


def test_async_invoke_on_a_real_time_endpoint_is_refused(deploy):
    dep = deploy(async_config=False)
    with pytest.raises(ClientError, match="AsyncInferenceConfig"):
        dep.clients.sagemaker_runtime.invoke_endpoint_async(EndpointName=dep.name, Body=payload())


def test_inference_id_is_not_an_idempotency_key(deploy, emulator):
    dep = deploy()
    invoke(dep, payload(value=1), InferenceId="same-id")
    invoke(dep, payload(value=2), InferenceId="same-id")
    assert len(dep.notifications(2)) == 2
    import urllib.request

    with urllib.request.urlopen(f"{emulator['url']}/_mf_sm_async/counts") as response:
        counts = json.load(response)[f"us-east-1/{dep.name}"]
    assert counts["per_inference_id"]["same-id"] == 2


def test_a_missing_input_object_fails_the_request_not_the_call(deploy):
    dep = deploy()
    answer = dep.clients.sagemaker_runtime.invoke_endpoint_async(
        EndpointName=dep.name, InputLocation=f"s3://{dep.bucket}/does/not/exist.json")
    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Failed"
    assert "does/not/exist.json" in dep.read(answer["FailureLocation"]).decode()
