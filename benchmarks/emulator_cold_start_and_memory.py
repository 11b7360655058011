"""Cold start from zero instances, and the emulator's memory with a 1 GiB payload.

    python benchmarks/emulator_cold_start_and_memory.py [--repeat 3] [--gib 1]

Cold start: a scikit-learn model (LogisticRegression on the digits data) on an endpoint with AWS's
documented scale-to-zero policies, left to scale in to 0; then one invocation, timed from the call to the
result in the client. It is the sum of the alarm's reaction (two emulated 60 s datapoints: 0.2 s at the
time scale of 600 used here; two real minutes at scale 1, as on AWS) and the instance start (a
model-server process unpacking, importing and loading the model, then answering /ping), which is also
timed alone through UpdateEndpointWeightsAndCapacities 0 -> 1.

Memory: peak RSS (VmHWM) growth of the daemon and of the model-server process while a payload of
``--gib`` GiB goes through (multipart upload, InvokeEndpointAsync by InputLocation, a model that reads all
of it and answers its sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from emulator_setup import clients
from emulator_setup import deploy as deploy_endpoint

from mf_sm_async.local import daemon
from mf_sm_async.model import package_directory, package_estimator

HERE = Path(__file__).parent

SHA256_MODEL = HERE.parent / "tests" / "conformance" / "models" / "sha256"


def deploy(c, tarball: Path, *, scale_to_zero: bool) -> tuple[str, str]:
    name, queue = deploy_endpoint(c, tarball, max_concurrent=1)
    if scale_to_zero:
        autoscaling, resource = c["application-autoscaling"], f"endpoint/{name}/variant/AllTraffic"
        dimension = "sagemaker:variant:DesiredInstanceCount"
        autoscaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource,
                                             ScalableDimension=dimension, MinCapacity=0, MaxCapacity=1)
        autoscaling.put_scaling_policy(
            PolicyName="backlog", ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dimension,
            PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 5.0, "ScaleInCooldown": 60, "ScaleOutCooldown": 60,
                "CustomizedMetricSpecification": {"MetricName": "ApproximateBacklogSizePerInstance",
                                                  "Namespace": "AWS/SageMaker", "Statistic": "Average",
                                                  "Dimensions": [{"Name": "EndpointName", "Value": name}]}})
        step = autoscaling.put_scaling_policy(
            PolicyName="wake", ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dimension,
            PolicyType="StepScaling", StepScalingPolicyConfiguration={
                "AdjustmentType": "ChangeInCapacity", "Cooldown": 60,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})
        c["cloudwatch"].put_metric_alarm(
            AlarmName=f"{name}-wake", MetricName="HasBacklogWithoutCapacity", Namespace="AWS/SageMaker",
            Statistic="Average", EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=1, Period=60,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            Dimensions=[{"Name": "EndpointName", "Value": name}], AlarmActions=[step["PolicyARN"]])
    return name, queue


def instances(c, name: str) -> int:
    return c["sagemaker"].describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"]


def wait(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(0.01)


def first_result(c, name: str, queue: str, body: bytes, content_type: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    c["sagemaker-runtime"].invoke_endpoint_async(EndpointName=name, Body=body, ContentType=content_type)
    while True:
        for message in c["sqs"].receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []):
            c["sqs"].delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            note = json.loads(json.loads(message["Body"])["Message"])
            if note.get("eventName") == "InferenceResult":
                bucket, key = note["responseParameters"]["outputLocation"][5:].split("/", 1)
                output = c["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()
                return time.perf_counter() - started, output


def peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def cold_start(c, tmp: Path, repeat: int) -> tuple[list[float], list[float]]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    features, labels = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=2000).fit(features, labels)
    name, queue = deploy(c, package_estimator(model, tmp / "sk"), scale_to_zero=True)
    row = (json.dumps(features[0].tolist()) + "\n").encode()
    to_result, instance_start = [], []
    for _ in range(repeat):
        wait(lambda: instances(c, name) == 0)
        seconds, output = first_result(c, name, queue, row, "application/jsonlines")
        assert json.loads(output) == int(labels[0]) or json.loads(output) == [int(labels[0])], output
        to_result.append(seconds)
    c["application-autoscaling"].deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{name}/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount")
    for _ in range(repeat):
        for count in (0, 1):
            started = time.perf_counter()
            c["sagemaker"].update_endpoint_weights_and_capacities(EndpointName=name, DesiredWeightsAndCapacities=[
                {"VariantName": "AllTraffic", "DesiredInstanceCount": count}])
            wait(lambda: instances(c, name) == count)
        instance_start.append(time.perf_counter() - started)
    return to_result, instance_start


def memory(c, tmp: Path, state: dict, gib: int) -> tuple[float, float, float]:
    name, queue = deploy(c, package_directory(SHA256_MODEL, tmp / "sha"), scale_to_zero=False)
    path, digest = tmp / "payload.bin", hashlib.sha256()
    with open(path, "wb") as out:
        block = os.urandom(1 << 20)
        for _ in range(gib << 10):
            digest.update(block)
            out.write(block)
    with urllib.request.urlopen(f"{state['url']}/_mf_sm_async/counts") as response:
        counts = json.load(response)
    model_pid = counts[f"us-east-1/{name}"]["pids"][0]
    daemon_before, model_before = peak_mb(state["pid"]), peak_mb(model_pid)
    started = time.perf_counter()
    c["s3"].upload_file(str(path), name, "payload.bin")
    c["sagemaker-runtime"].invoke_endpoint_async(EndpointName=name, InputLocation=f"s3://{name}/payload.bin",
                                                 ContentType="application/octet-stream", InvocationTimeoutSeconds=900)
    while True:
        messages = c["sqs"].receive_message(QueueUrl=queue, WaitTimeSeconds=5).get("Messages", [])
        notes = [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
        done = [n for n in notes if n.get("eventName") == "InferenceResult"]
        if done:
            break
    assert done[0]["invocationStatus"] == "Completed"
    bucket, key = done[0]["responseParameters"]["outputLocation"][5:].split("/", 1)
    assert json.loads(c["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())["sha256"] == digest.hexdigest()
    return peak_mb(state["pid"]) - daemon_before, peak_mb(model_pid) - model_before, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gib", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "state"
        state = daemon.start(state_dir, time_scale=600)
        try:
            c = clients(state["url"], 16)
            to_result, instance_start = cold_start(c, Path(tmp), args.repeat)
            daemon_growth, model_growth, seconds = memory(c, Path(tmp), state, args.gib)
        finally:
            daemon.stop(state_dir)
    print("\n| measure | value |\n|---|---|")
    print(f"| cold start at 0 instances -> first result in the client (time scale 600, median of {args.repeat}) "
          f"| {statistics.median(to_result):.2f} s (runs: {', '.join(f'{s:.2f}' for s in to_result)}) |")
    print(f"| instance start alone, 0 -> 1 via UpdateEndpointWeightsAndCapacities (median) "
          f"| {statistics.median(instance_start):.2f} s |")
    print(f"| daemon peak RSS growth, {args.gib} GiB payload | {daemon_growth:.0f} MB |")
    print(f"| model server peak RSS growth, {args.gib} GiB payload | {model_growth:.0f} MB |")
    print(f"| {args.gib} GiB upload + invocation + result | {seconds:.1f} s |")


if __name__ == "__main__":
    main()
