"""Every InvokeEndpointAsync header is range-checked by the server itself, for clients that do not
(curl, other SDKs): the answer is 400 ValidationError naming the header."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

H = "X-Amzn-SageMaker-"

CASES = [
    ({H + "RequestTTLSeconds": "59"}, "requestTTLSeconds"),
    ({H + "RequestTTLSeconds": "21601"}, "requestTTLSeconds"),
    ({H + "RequestTTLSeconds": "soon"}, "requestTTLSeconds"),
    ({H + "InvocationTimeoutSeconds": "0"}, "invocationTimeoutSeconds"),
    ({H + "InvocationTimeoutSeconds": "3601"}, "invocationTimeoutSeconds"),
    ({H + "Inference-Id": "x" * 65}, "inferenceId"),
    ({H + "Content-Type": "a" * 1025}, "contentType"),
    ({H + "Accept": "a" * 1025}, "accept"),
    ({H + "Custom-Attributes": "a" * 1025}, "customAttributes"),
    ({H + "S3OutputPathExtension": "p" * 513}, "s3OutputPathExtension"),
    ({H + "Filename": "f" * 33}, "filename"),
    ({H + "InputLocation": "http//not-a-uri"}, "inputLocation"),
]


def post(url: str, name: str, headers: dict, body: bytes = b"") -> tuple[int, dict, dict]:
    request = urllib.request.Request(f"{url}/endpoints/{name}/async-invocations", data=body or None,
                                     method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture(scope="module")
def endpoint(request, clients, tmp_path_factory):
    from .conftest import IMAGE, ROLE, SCRIPT_ENV, make_bucket, upload_model

    bucket = make_bucket(clients)
    model_url = upload_model(clients, bucket, "behaviours", tmp_path_factory.mktemp("pkg"))
    name = "validation-endpoint"
    clients.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                                   PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_url,
                                                     "Environment": SCRIPT_ENV})
    clients.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}], AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{bucket}/o"}})
    clients.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    clients.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1})
    yield name, bucket
    clients.sagemaker.delete_endpoint(EndpointName=name)


@pytest.mark.parametrize("headers,field", CASES, ids=[c[1] + "-" + str(i) for i, c in enumerate(CASES)])
def test_out_of_range_header_is_a_validation_error_naming_it(emulator, endpoint, headers, field):
    name, bucket = endpoint
    base = {H + "InputLocation": f"s3://{bucket}/in.json"}
    status, response_headers, body = post(emulator["url"], name, {**base, **headers})
    assert status == 400
    assert response_headers.get("x-amzn-ErrorType") == "ValidationError"
    assert field in body["message"]


def test_boundary_values_are_accepted(emulator, endpoint):
    name, bucket = endpoint
    status, headers, body = post(emulator["url"], name, {
        H + "InputLocation": f"s3://{bucket}/in.json", H + "RequestTTLSeconds": "60",
        H + "InvocationTimeoutSeconds": "3600", H + "Inference-Id": "i" * 64, H + "Filename": "f" * 32,
    })
    assert status == 202, body
    assert body["InferenceId"] == "i" * 64
    assert headers["X-Amzn-SageMaker-OutputLocation"].endswith("/" + "f" * 32)


def test_generated_inference_ids_are_unique(emulator, endpoint):
    name, _ = endpoint
    ids = {post(emulator["url"], name, {}, body=b'{"op": "echo"}')[2]["InferenceId"] for _ in range(5)}
    assert len(ids) == 5
