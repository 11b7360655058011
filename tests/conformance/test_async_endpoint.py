"""AsyncEndpoint's lifecycle on the emulator, with real model processes: deploy, use, scale to zero,
wake, delete; a failed deploy leaves nothing behind."""

from __future__ import annotations

import json
import os

import pytest
from botocore.exceptions import ClientError

from mf_sm_async import AsyncEndpoint, DeployError, aws
from mf_sm_async.local.daemon import pid_alive

from .conftest import MODELS, counts
from .test_endpoint_lifecycle import wait_for


@pytest.fixture(scope="module")
def estimator():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    features, labels = load_digits(return_X_y=True)
    return LogisticRegression(max_iter=2000).fit(features[:500], labels[:500]), features[500:510]


def resources() -> dict:
    """Every resource kind deploy makes, counted through the APIs."""
    sm, sns, sqs = aws.client("sagemaker"), aws.client("sns"), aws.client("sqs")
    return {
        "endpoints": len(sm.list_endpoints()["Endpoints"]),
        "configs": len(sm.list_endpoint_configs()["EndpointConfigs"]),
        "models": len(sm.list_models()["Models"]),
        "topics": len(sns.list_topics()["Topics"]),
        "queues": len(sqs.list_queues().get("QueueUrls", [])),
        "alarms": len(aws.client("cloudwatch").describe_alarms()["MetricAlarms"]),
        "scalable targets": len(aws.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker")["ScalableTargets"]),
    }


def score(ep: AsyncEndpoint, rows) -> list:
    body = "".join(json.dumps(r.tolist()) + "\n" for r in rows).encode()
    answer = aws.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=ep.name, Body=body, ContentType="application/jsonlines", Accept="application/jsonlines")
    bucket, key = answer["OutputLocation"][5:].split("/", 1)
    s3 = aws.client("s3")

    def ready():
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            return None
    return [json.loads(line) for line in wait_for(ready, timeout=60, what="the output").decode().splitlines()]


def test_deploy_score_scale_to_zero_wake_and_delete(local_target, estimator):
    model, rows = estimator
    before = resources()
    ep = AsyncEndpoint.deploy(model=model, max_instances=2, tags={"team": "ml"})
    assert len(ep.name) <= 63 and ep.name.startswith("mfsa-logisticregression-")
    tags = {t["Key"]: t["Value"] for t in aws.client("sagemaker").list_tags(
        ResourceArn=aws.client("sagemaker").describe_endpoint(EndpointName=ep.name)["EndpointArn"])["Tags"]}
    assert tags["mf-sm-async:managed"] == "true" and tags["team"] == "ml"
    assert score(ep, rows) == model.predict(rows).tolist()
    status = ep.status()
    assert (status.status, status.instances) == ("InService", 1)
    [pid] = counts(ep.name)["pids"]

    ep.scale_to_zero()
    wait_for(lambda: ep.status().instances == 0, what="zero instances")
    wait_for(lambda: not pid_alive(pid), what="the model server to stop")
    again = AsyncEndpoint.deploy(model=model, max_instances=2, tags={"team": "ml"})  # same model: same endpoint
    assert again.name == ep.name
    assert score(again, rows[:3]) == model.predict(rows[:3]).tolist()  # woken from zero by its alarm
    assert counts(ep.name)["pids"] and counts(ep.name)["pids"] != [pid]

    ep.delete()
    ep.delete()  # safe twice
    assert resources() == before
    assert counts(ep.name) == {}


def test_failed_deploy_leaves_nothing_behind(local_target):
    before = resources()
    with pytest.raises(DeployError) as error:
        AsyncEndpoint.deploy(model=str(MODELS / "broken"))
    assert "weights are corrupt" in str(error.value)
    assert "endpoint step" in str(error.value) and "nothing left behind" in str(error.value)
    assert resources() == before


def test_attach_keeps_what_it_did_not_make(local_target, estimator):
    model, rows = estimator
    made = AsyncEndpoint.deploy(model=model, max_instances=1, teardown="delete")
    with AsyncEndpoint.attach(made.name) as attached:
        assert attached.teardown_mode == "keep"
        assert score(attached, rows[:2]) == model.predict(rows[:2]).tolist()
    assert aws.client("sagemaker").describe_endpoint(EndpointName=made.name)["EndpointStatus"] == "InService"
    with made:
        pass  # its own teardown: delete
    with pytest.raises(ClientError):
        aws.client("sagemaker").describe_endpoint(EndpointName=made.name)


def test_attach_to_a_missing_endpoint_is_a_clear_error(local_target):
    with pytest.raises(DeployError, match="cannot attach to endpoint 'nope'"):
        AsyncEndpoint.attach("nope")


def test_cli_lists_tears_down_shows_logs_and_cleans_up(local_target, estimator):
    import subprocess
    import sys

    model, rows = estimator
    ep = AsyncEndpoint.deploy(model=model, max_instances=1, name="cli-managed-endpoint")

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "mf_sm_async.cli", *args], capture_output=True, text=True,
                                timeout=120, env=os.environ)
        assert not check or result.returncode == 0, result.stderr
        return result

    listed = cli("endpoints", "list").stdout
    [line] = [l for l in listed.splitlines() if l.startswith("cli-managed-endpoint")]
    assert line.split()[1:2] == ["InService"] and line.split()[3] == "1"
    assert "model server listening" in cli("endpoints", "logs", "cli-managed-endpoint").stdout
    assert cli("endpoints", "teardown", "cli-managed-endpoint").stdout.strip() == "cli-managed-endpoint: scaled to zero"
    wait_for(lambda: ep.status().instances == 0, what="zero instances")

    bad = cli("cleanup", "--older-than", "soon", check=False)
    assert bad.returncode == 2 and "--older-than='soon' is invalid" in bad.stderr
    kept = cli("cleanup", "--older-than", "0s").stdout
    assert "still in use (live lease), kept: cli-managed-endpoint" in kept  # this test still holds it
    ep.teardown("keep")  # releases the lease
    assert "deleted: cli-managed-endpoint" in cli("cleanup", "--older-than", "0s").stdout
    assert "cli-managed-endpoint" not in cli("endpoints", "list").stdout


def test_cli_refuses_to_tear_down_an_endpoint_it_did_not_make(local_target, tmp_path):
    import subprocess
    import sys

    from .conftest import Clients, create_deployment

    foreign = create_deployment(Clients(aws.local_endpoint_url()), tmp_path)
    result = subprocess.run([sys.executable, "-m", "mf_sm_async.cli", "endpoints", "teardown", foreign.name,
                             "--delete"], capture_output=True, text=True, timeout=120, env=os.environ)
    assert result.returncode == 2 and "was not made by mf-sm-async" in result.stderr
    assert aws.client("sagemaker").describe_endpoint(EndpointName=foreign.name)["EndpointStatus"] == "InService"
    aws.client("sagemaker").delete_endpoint(EndpointName=foreign.name)


def test_teardown_never_pulls_an_endpoint_from_under_another_live_holder(local_target, estimator):
    import json as _json
    import time

    model, rows = estimator
    first = AsyncEndpoint.deploy(model=model, max_instances=1, name="leased-endpoint")
    second = AsyncEndpoint.deploy(model=model, max_instances=1, name="leased-endpoint")
    first.teardown()  # "zero", but the second holder is live
    assert first.status().desired_instances == 1
    assert score(second, rows[:2]) == model.predict(rows[:2]).tolist()

    # a holder that died: its lease is there but expired, so it no longer counts
    s3 = aws.client("s3")
    s3.put_object(Bucket=second.resources.bucket, Key=f"{second.resources.prefix}/leases/dead-holder.json",
                  Body=_json.dumps({"holder": "dead-holder", "expires_at": time.time() - 1}).encode())
    second.teardown()
    wait_for(lambda: second.status().instances == 0, what="zero instances after the last live holder left")
    AsyncEndpoint.attach("leased-endpoint").delete()


def test_the_emulator_scales_to_zero_an_endpoint_whose_holders_all_died(local_target, estimator):
    import json as _json
    import time

    model, rows = estimator
    ep = AsyncEndpoint.deploy(model=model, min_instances=1, max_instances=1, name="orphaned-endpoint")
    assert ep.status().instances == 1
    ep.lease._stop.set()  # the holder "dies": no more renewals, no release; its lease runs out
    aws.client("s3").put_object(Bucket=ep.resources.bucket, Key=ep.lease.key,
                                Body=_json.dumps({"holder": ep.lease.holder, "expires_at": time.time() - 1}).encode())
    wait_for(lambda: ep.status().instances == 0, timeout=30, what="the emulator to scale the orphan to zero")
    alarm = aws.client("cloudwatch").describe_alarms(AlarmNames=[ep.resources.alarm])["MetricAlarms"][0]
    assert alarm["ActionsEnabled"] is False  # its leftover backlog cannot wake it
    ep.delete()
