"""SageMaker's own images on the emulator, driven by boto3 code written as AWS's asynchronous inference
guide writes it: a model from the image URI, an endpoint config with AsyncInferenceConfig, the
``endpoint_in_service`` waiter, autoscaling registered down to zero, ``invoke_endpoint_async``, polling S3
for the output, then deregistering and deleting. The outputs must equal what the same model predicts
locally, in the format the real container writes.

- built-in XGBoost (``sagemaker-xgboost:<version>``): pickled / JSON / UBJSON boosters, CSV and libsvm
  requests (a leading label in libsvm), CSV and JSON responses, the S3 object's Content-Type and the
  container's libsvm default when a request names none, selectable output as JSON Lines, the old images'
  comma-separated answer, and the container's refusals (JSON is not a request type); with
  ``SAGEMAKER_PROGRAM``, script mode from a ``sourcedir.tar.gz`` with XGBoost's default functions;
- the scikit-learn image with an entry point from a ``sourcedir.tar.gz`` in S3 (the container's default
  input / predict / output functions), and with ``code/`` inside model.tar.gz;
- images the emulator cannot run: Failed with a FailureReason saying how to map one; and a mapped one.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError

from mf_sm_async.local import daemon
from mf_sm_async.model import package_estimator

from .conftest import IMAGE as SKLEARN_IMAGE, MODELS, ROLE, SCRIPT_ENV, Clients, make_bucket

xgb = pytest.importorskip("xgboost")  # the test extra installs xgboost-cpu

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:{version}"
FEATURES = 5


# --------------------------------------------------------------------------------------------------
# The guide's code, step by step


@dataclass
class Request:
    """One invoke_endpoint_async call: the payload goes to S3 first (the guide's InputLocation)."""

    body: bytes
    content_type: str | None = None        # the request's ContentType (None: not sent)
    object_content_type: str | None = None  # the S3 object's Content-Type (None: not set)
    accept: str | None = None
    custom_attributes: str | None = None


@dataclass
class Outcome:
    ok: bool        # the output appeared at OutputLocation (else the failure at FailureLocation)
    body: bytes


def tarball(path: Path, files: dict[str, bytes | Path]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            data = data.read_bytes() if isinstance(data, Path) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def poll_s3(s3, output_location: str, failure_location: str, timeout: float = 120.0) -> Outcome:
    """The guide's get_output: read the output object until it exists (here also the failure object)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ok, location in ((True, output_location), (False, failure_location)):
            bucket, key = location[len("s3://"):].split("/", 1)
            try:
                return Outcome(ok, s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            except ClientError as error:
                if error.response["Error"]["Code"] != "NoSuchKey":
                    raise
        time.sleep(0.5)
    raise AssertionError(f"neither {output_location} nor {failure_location} appeared within {timeout}s")


def async_guide(clients: Clients, bucket: str, *, image: str, model_url: str | None, requests: list[Request],
                environment: dict | None = None) -> list[Outcome]:
    """AWS's asynchronous inference guide in boto3, from create_model to delete_model."""
    sm_client, sm_runtime = clients.sagemaker, clients.sagemaker_runtime
    scaling, cloudwatch = clients.application_autoscaling, clients.cloudwatch
    name = f"guide-{uuid.uuid4().hex[:10]}"
    container = {"Image": image}
    if model_url:
        container["ModelDataUrl"] = model_url
    if environment:
        container["Environment"] = environment
    sm_client.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    sm_client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "variant1", "ModelName": name, "InstanceType": "ml.m5.xlarge",
                             "InitialInstanceCount": 1}],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{bucket}/output",
                                               "S3FailurePath": f"s3://{bucket}/failure"},
                              "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4}})
    sm_client.create_endpoint(EndpointName=name, EndpointConfigName=name)
    resource_id = f"endpoint/{name}/variant/variant1"
    try:
        sm_client.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1,
                                                                                           "MaxAttempts": 180})
        scaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id,
                                         ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                                         MinCapacity=0, MaxCapacity=5)
        scaling.put_scaling_policy(
            PolicyName="Invocations-ScalingPolicy", ServiceNamespace="sagemaker", ResourceId=resource_id,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount", PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 5.0, "ScaleInCooldown": 600, "ScaleOutCooldown": 300,
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": name}], "Statistic": "Average"}})
        step = scaling.put_scaling_policy(  # the guide's policy to scale out from zero
            PolicyName="HasBacklogWithoutCapacity-ScalingPolicy", ServiceNamespace="sagemaker",
            ResourceId=resource_id, ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            PolicyType="StepScaling",
            StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average",
                                            "Cooldown": 300,
                                            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})
        cloudwatch.put_metric_alarm(
            AlarmName=f"{name}-backlog", MetricName="HasBacklogWithoutCapacity", Namespace="AWS/SageMaker",
            Statistic="Average", EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
            Dimensions=[{"Name": "EndpointName", "Value": name}], Period=60, AlarmActions=[step["PolicyARN"]])
        assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource_id])[
            "ScalableTargets"][0]["MinCapacity"] == 0

        answers = []
        for n, request in enumerate(requests):
            key = f"input/{name}/payload-{n}"  # no file extension: S3 guesses no type from it
            extra = {"ContentType": request.object_content_type} if request.object_content_type else {}
            clients.s3.put_object(Bucket=bucket, Key=key, Body=request.body, **extra)
            fields = {k: v for k, v in (("ContentType", request.content_type), ("Accept", request.accept),
                                        ("CustomAttributes", request.custom_attributes)) if v}
            answers.append(sm_runtime.invoke_endpoint_async(EndpointName=name, InputLocation=f"s3://{bucket}/{key}",
                                                            **fields))
        return [poll_s3(clients.s3, a["OutputLocation"], a["FailureLocation"]) for a in answers]
    finally:
        cloudwatch.delete_alarms(AlarmNames=[f"{name}-backlog"])
        try:
            scaling.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id,
                                               ScalableDimension="sagemaker:variant:DesiredInstanceCount")
        except ClientError:
            pass  # not registered: the waiter failed
        sm_client.delete_endpoint(EndpointName=name)
        sm_client.delete_endpoint_config(EndpointConfigName=name)
        sm_client.delete_model(ModelName=name)


def wait_for_failed(clients: Clients, bucket: str, *, image: str, model_url: str | None,
                    environment: dict | None = None) -> str:
    """Create an async endpoint as the guide does; it must go Failed: its FailureReason."""
    name = f"fail-{uuid.uuid4().hex[:10]}"
    container = {"Image": image, **({"ModelDataUrl": model_url} if model_url else {}),
                 **({"Environment": environment} if environment else {})}
    clients.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    clients.sagemaker.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[{"VariantName": "variant1", "ModelName": name,
                                                      "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1}],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{bucket}/output"}})
    clients.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    try:
        with pytest.raises(Exception, match="Failed"):  # the waiter stops at Failed
            clients.sagemaker.get_waiter("endpoint_in_service").wait(
                EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 180})
        described = clients.sagemaker.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "Failed"
        return described["FailureReason"]
    finally:
        clients.sagemaker.delete_endpoint(EndpointName=name)


# --------------------------------------------------------------------------------------------------
# Built-in XGBoost


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    features = np.round(rng.normal(size=(300, FEATURES)), 3)
    return features, rng


def binary_booster(data):
    features, _ = data
    labels = (features[:, 0] + 0.5 * features[:, 1] - features[:, 3] > 0).astype(int)
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}, xgb.DMatrix(features, label=labels),
                     20)


def save_booster(booster, fmt: str) -> bytes:
    if fmt == "pickle":
        import pickle

        return pickle.dumps(booster)
    return bytes(booster.save_raw(fmt))


def xgboost_model(clients, bucket, booster, fmt: str, tmp_path: Path) -> str:
    archive = tarball(tmp_path / f"xgb-{fmt}.tar.gz", {"xgboost-model": save_booster(booster, fmt)})
    clients.s3.upload_file(str(archive), bucket, f"models/xgb-{fmt}/model.tar.gz")
    return f"s3://{bucket}/models/xgb-{fmt}/model.tar.gz"


def as_csv(rows) -> bytes:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode()


def as_libsvm(rows, labels, one_based: bool) -> bytes:
    start = 1 if one_based else 0
    return "\n".join(f"{label} " + " ".join(f"{i + start}:{v!r}" for i, v in enumerate(map(float, row)))
                     for row, label in zip(rows, labels)).encode()


def scores(outcome: Outcome) -> list[float]:
    assert outcome.ok, outcome.body.decode(errors="replace")
    return [float(line) for line in outcome.body.decode().splitlines()]


@pytest.mark.parametrize("fmt,version", [("pickle", "1.7-1"), ("json", "3.0-5"), ("ubj", "1.7-1-cpu-py3")])
def test_xgboost_guide_answers_equal_the_local_boosters_predictions(clients, data, tmp_path, fmt, version):
    features, _ = data
    booster = binary_booster(data)
    rows = features[:40]
    expected = booster.predict(xgb.DMatrix(rows)).tolist()
    bucket = make_bucket(clients)
    csv_rows, libsvm_rows = as_csv(rows), as_libsvm(rows, [1] * len(rows), one_based=True)
    outcomes = async_guide(clients, bucket, image=XGBOOST_IMAGE.format(version=version),
                           model_url=xgboost_model(clients, bucket, booster, fmt, tmp_path), requests=[
        Request(csv_rows, content_type="text/csv"),
        Request(csv_rows, content_type="text/csv", accept="application/json"),
        Request(libsvm_rows, content_type="text/libsvm"),
        Request(csv_rows, object_content_type="text/csv"),  # no ContentType: the object's own
        Request(libsvm_rows),  # neither: the container's default, libsvm
    ])
    assert scores(outcomes[0]) == expected  # one score per line
    assert outcomes[1].ok and json.loads(outcomes[1].body) == {"predictions": [{"score": s} for s in expected]}
    assert scores(outcomes[2]) == expected
    assert scores(outcomes[3]) == expected
    assert scores(outcomes[4]) == expected


def test_xgboost_multiclass_rows_and_selectable_output_as_json_lines(clients, data, tmp_path):
    features, _ = data
    labels = np.digitize(features[:, 0], [-0.5, 0.5])
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
                        xgb.DMatrix(features, label=labels), 10)
    rows = features[:25]
    probabilities = booster.predict(xgb.DMatrix(rows))
    bucket = make_bucket(clients)
    model_url = xgboost_model(clients, bucket, booster, "json", tmp_path)
    plain = async_guide(clients, bucket, image=XGBOOST_IMAGE.format(version="1.7-1"), model_url=model_url, requests=[
        Request(as_csv(rows), content_type="text/csv", accept="text/csv"),
        Request(as_csv(rows), content_type="text/csv", accept="application/json")])
    assert plain[0].ok and [[float(v) for v in line.split(",")] for line in plain[0].body.decode().splitlines()] \
        == probabilities.tolist()
    assert json.loads(plain[1].body) == {"predictions": [{"score": row} for row in probabilities.tolist()]}

    selected = async_guide(clients, bucket, image=XGBOOST_IMAGE.format(version="1.7-1"), model_url=model_url,
                           environment={"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probabilities"},
                           requests=[Request(as_csv(rows), content_type="text/csv", accept="application/jsonlines")])
    assert selected[0].ok, selected[0].body
    assert [json.loads(line) for line in selected[0].body.decode().splitlines()] == [
        {"predicted_label": int(np.argmax(p)), "probabilities": p.tolist()} for p in probabilities]


def test_xgboost_refuses_what_its_container_refuses(clients, data, tmp_path):
    features, _ = data
    booster = binary_booster(data)
    bucket = make_bucket(clients)
    rows = features[:3]
    outcomes = async_guide(clients, bucket, image=XGBOOST_IMAGE.format(version="1.7-1"),
                           model_url=xgboost_model(clients, bucket, booster, "pickle", tmp_path), requests=[
        Request(json.dumps(rows.tolist()).encode(), content_type="application/json"),  # a response type only
        Request(as_csv(rows), content_type="text/csv", accept="application/jsonlines"),  # needs selectable output
        Request(as_csv(rows[:, :3]), content_type="text/csv"),  # 3 features for a 5-feature booster
        Request(as_csv(rows), content_type="text/csv", accept="text/html"),
    ])
    assert not any(o.ok for o in outcomes)
    assert b"application/json is not an accepted ContentType: csv, libsvm" in outcomes[0].body
    assert b"Content type application/jsonlines is not supported" in outcomes[1].body
    assert b"Feature size of csv inference data 3 is not consistent with feature size of trained model 5" \
        in outcomes[2].body
    assert b"Accept type text/html is not supported" in outcomes[3].body


def test_xgboost_images_before_1_5_answer_one_comma_separated_line_and_read_libsvm_indices_as_given(
        clients, data, tmp_path):
    features, _ = data
    booster = binary_booster(data)
    rows = features[:10]
    expected = booster.predict(xgb.DMatrix(rows)).tolist()
    bucket = make_bucket(clients)
    outcomes = async_guide(clients, bucket, image=XGBOOST_IMAGE.format(version="0.90-1-cpu-py3"),
                           model_url=xgboost_model(clients, bucket, booster, "pickle", tmp_path), requests=[
        Request(as_csv(rows), content_type="text/csv", accept="application/json"),  # Accept ignored
        Request(as_libsvm(rows, [0] * len(rows), one_based=False), content_type="text/x-libsvm"),
    ])
    for outcome in outcomes:
        assert outcome.ok, outcome.body
        assert [float(v) for v in outcome.body.decode().split(",")] == expected


def test_xgboost_image_with_an_entry_point_runs_script_mode_with_xgboosts_defaults(clients, data, tmp_path):
    features, _ = data
    booster = binary_booster(data)
    rows = features[:20]
    expected = booster.predict(xgb.DMatrix(rows))
    bucket = make_bucket(clients)
    model_url = xgboost_model(clients, bucket, booster, "json", tmp_path)
    clients.s3.upload_file(str(tarball(tmp_path / "sourcedir.tar.gz",
                                       {"entry.py": MODELS / "xgboost_entry_point" / "entry.py"})),
                           bucket, "code/sourcedir.tar.gz")
    outcomes = async_guide(clients, bucket, image=XGBOOST_IMAGE.format(version="1.7-1"), model_url=model_url,
                           environment={"SAGEMAKER_PROGRAM": "entry.py",
                                        "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{bucket}/code/sourcedir.tar.gz"},
                           requests=[
        Request(as_csv(rows), content_type="text/csv"),  # Accept defaults to JSON in script mode
        Request(as_libsvm(rows, [1] * len(rows), one_based=True), content_type="text/libsvm", accept="text/csv"),
        Request(json.dumps(rows.tolist()).encode(), content_type="application/json"),
    ])
    assert outcomes[0].ok and json.loads(outcomes[0].body) == expected.tolist()
    assert outcomes[1].ok and outcomes[1].body.decode().split() == [str(v) for v in expected]  # float32 text
    assert not outcomes[2].ok and json.loads(outcomes[2].body)["error"] == "UnsupportedFormatError"


# --------------------------------------------------------------------------------------------------
# The scikit-learn framework image


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    features, labels = load_digits(return_X_y=True)
    return LogisticRegression(max_iter=3000).fit(features[:1200], labels[:1200]), features[1200:1260]


def test_sklearn_guide_with_a_sourcedir_entry_point_uses_the_containers_default_functions(clients, digits, tmp_path):
    import joblib

    model, rows = digits
    expected = model.predict(rows.astype(np.float32)).tolist()  # the default input_fn casts to float32
    bucket = make_bucket(clients)
    joblib.dump(model, tmp_path / "model.joblib")
    clients.s3.upload_file(str(tarball(tmp_path / "model.tar.gz", {"model.joblib": tmp_path / "model.joblib"})),
                           bucket, "model/model.tar.gz")
    clients.s3.upload_file(str(tarball(tmp_path / "sourcedir.tar.gz",
                                       {"serve.py": MODELS / "sklearn_entry_point" / "serve.py"})),
                           bucket, "code/sourcedir.tar.gz")
    npy = io.BytesIO()
    np.save(npy, rows)
    outcomes = async_guide(clients, bucket, image=SKLEARN_IMAGE, model_url=f"s3://{bucket}/model/model.tar.gz",
                           environment={"SAGEMAKER_PROGRAM": "serve.py",
                                        "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{bucket}/code/sourcedir.tar.gz"},
                           requests=[
        Request(as_csv(rows), content_type="text/csv"),  # Accept defaults to JSON
        Request(json.dumps(rows.tolist()).encode(), content_type="application/json", accept="text/csv"),
        Request(npy.getvalue(), content_type="application/x-npy", accept="application/json"),
        Request(json.dumps(rows.tolist()).encode(), object_content_type="application/json"),
        Request(as_csv(rows), content_type="text/plain"),  # the default input_fn has no decoder for it
    ])
    assert outcomes[0].ok and json.loads(outcomes[0].body) == expected
    assert outcomes[1].ok and [int(line) for line in outcomes[1].body.decode().split()] == expected
    assert outcomes[2].ok and json.loads(outcomes[2].body) == model.predict(rows).tolist()
    assert outcomes[3].ok and json.loads(outcomes[3].body) == expected
    assert not outcomes[4].ok
    assert json.loads(outcomes[4].body)["error"] == "UnsupportedFormatError"
    assert "Content type text/plain is not supported" in json.loads(outcomes[4].body)["error-message"]


def test_sklearn_guide_with_code_inside_the_model_tarball(clients, digits, tmp_path):
    model, rows = digits
    bucket = make_bucket(clients)
    clients.s3.upload_file(str(package_estimator(model, tmp_path)), bucket, "model/model.tar.gz")
    outcomes = async_guide(clients, bucket, image=SKLEARN_IMAGE, model_url=f"s3://{bucket}/model/model.tar.gz",
                           environment=SCRIPT_ENV, requests=[
        Request(as_csv(rows), content_type="text/csv", accept="application/json"),
        Request(as_csv(rows), content_type="text/csv", accept="application/json",
                custom_attributes="method=predict_proba"),
    ])
    assert outcomes[0].ok and json.loads(outcomes[0].body) == model.predict(rows).tolist()
    assert outcomes[1].ok and np.allclose(json.loads(outcomes[1].body), model.predict_proba(rows), rtol=0, atol=1e-12)


def test_sklearn_image_without_an_entry_point_fails_the_endpoint_naming_it(clients, digits, tmp_path):
    model, _ = digits
    bucket = make_bucket(clients)
    clients.s3.upload_file(str(package_estimator(model, tmp_path)), bucket, "model/model.tar.gz")
    reason = wait_for_failed(clients, bucket, image=SKLEARN_IMAGE, model_url=f"s3://{bucket}/model/model.tar.gz")
    assert "SAGEMAKER_PROGRAM" in reason and "SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code" in reason


# --------------------------------------------------------------------------------------------------
# Any other image: a mapped local command, or Failed saying how to map one

OTHER_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-container:2024-06"


@pytest.fixture(scope="module")
def mapping_emulator(tmp_path_factory):
    """A daemon of its own, reading its image mapping from a file this module controls."""
    state_dir = tmp_path_factory.mktemp("mapping-state")
    images_file = state_dir.parent / f"images-{uuid.uuid4().hex[:6]}.json"
    saved = os.environ.get("MF_SM_ASYNC_IMAGES_FILE")
    os.environ["MF_SM_ASYNC_IMAGES_FILE"] = str(images_file)
    try:
        state = daemon.start(state_dir, time_scale=60)
    finally:
        os.environ.pop("MF_SM_ASYNC_IMAGES_FILE") if saved is None else os.environ.update(
            MF_SM_ASYNC_IMAGES_FILE=saved)
    yield Clients(state["url"]), images_file
    daemon.stop(state_dir)


def echo_model(clients: Clients, bucket: str, tmp_path: Path) -> str:
    archive = tarball(tmp_path / "echo.tar.gz", {"greeting.txt": MODELS / "echo_container" / "greeting.txt"})
    clients.s3.upload_file(str(archive), bucket, "model/model.tar.gz")
    return f"s3://{bucket}/model/model.tar.gz"


def test_an_image_without_a_mapping_fails_saying_how_to_add_one(mapping_emulator, tmp_path):
    clients, images_file = mapping_emulator
    images_file.unlink(missing_ok=True)
    bucket = make_bucket(clients)
    reason = wait_for_failed(clients, bucket, image=OTHER_IMAGE, model_url=echo_model(clients, bucket, tmp_path))
    assert f"cannot run image '{OTHER_IMAGE}'" in reason
    assert str(images_file) in reason and "MF_SM_ASYNC_IMAGE_COMMANDS" in reason
    assert "{port}" in reason and "{model_dir}" in reason


def test_an_image_mapped_to_a_local_command_serves_the_guides_requests(mapping_emulator, tmp_path):
    clients, images_file = mapping_emulator
    server = MODELS / "echo_container" / "serve.py"
    images_file.write_text(json.dumps({  # a glob: any account, region and tag of the repository
        "*.dkr.ecr.*.amazonaws.com/my-container:*": [sys.executable, str(server), "--port", "{port}",
                                                     "--model-dir", "{model_dir}"]}))
    bucket = make_bucket(clients)
    [outcome] = async_guide(clients, bucket, image=OTHER_IMAGE, model_url=echo_model(clients, bucket, tmp_path),
                            environment={"ECHO_SUFFIX": "from the model's Environment"},
                            requests=[Request(b"ping me", content_type="text/plain")])
    assert outcome.ok, outcome.body
    answer = json.loads(outcome.body)
    assert answer["greeting"] == "hello from the mapped image"  # {model_dir}: the unpacked model.tar.gz
    assert answer["body"] == "ping me" and answer["content_type"] == "text/plain"
    assert answer["bind_to_port"] == str(answer["port"])
    assert answer["model_env"] == "from the model's Environment"
