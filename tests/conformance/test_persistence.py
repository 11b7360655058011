"""A daemon restarted on the same state directory has lost no object, endpoint, queue or queued request."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from mf_sm_async.local import daemon

from .conftest import Clients, create_deployment
from .test_endpoint_lifecycle import wait_for


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    yield path
    daemon.stop(path)


def restart(state_dir: Path, *, kill: bool) -> Clients:
    state = daemon.status(state_dir)
    if kill:
        os.kill(state["pid"], signal.SIGKILL)
        wait_for(lambda: daemon.status(state_dir) is None, what="the killed daemon to be gone")
    else:
        daemon.stop(state_dir)
    return Clients(daemon.start(state_dir)["url"])


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "sigkill"])
def test_restart_keeps_objects_endpoints_policies_and_queued_requests(state_dir, tmp_path, kill):
    clients = Clients(daemon.start(state_dir)["url"])
    dep = create_deployment(clients, tmp_path, max_concurrent=1)
    clients.s3.put_object(Bucket=dep.bucket, Key="keep/me.txt", Body=b"still here")
    clients.application_autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{dep.name}/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=0, MaxCapacity=3)
    runtime = clients.sagemaker_runtime
    busy = runtime.invoke_endpoint_async(EndpointName=dep.name, ContentType="application/json",
                                         Body=json.dumps({"op": "sleep", "seconds": 5, "value": "busy"}).encode())
    waiting = runtime.invoke_endpoint_async(EndpointName=dep.name, ContentType="application/json",
                                            Body=json.dumps({"op": "echo", "value": "queued"}).encode())

    clients = restart(state_dir, kill=kill)
    dep.clients = clients
    assert clients.s3.get_object(Bucket=dep.bucket, Key="keep/me.txt")["Body"].read() == b"still here"
    clients.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=dep.name, WaiterConfig={"Delay": 1})
    described = clients.sagemaker.describe_endpoint(EndpointName=dep.name)
    assert described["AsyncInferenceConfig"]["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == 1
    [target] = clients.application_autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["MaxCapacity"] == 3
    notes = {n["inferenceId"]: n for n in dep.notifications(2, timeout=60)}  # same queue, same topics
    assert notes[busy["InferenceId"]]["invocationStatus"] == "Completed"
    assert notes[waiting["InferenceId"]]["invocationStatus"] == "Completed"
    assert json.loads(dep.read(waiting["OutputLocation"]))["echo"] == "queued"


def test_unconsumed_notifications_survive_a_clean_stop(state_dir, tmp_path):
    clients = Clients(daemon.start(state_dir)["url"])
    dep = create_deployment(clients, tmp_path)
    answer = clients.sagemaker_runtime.invoke_endpoint_async(EndpointName=dep.name, ContentType="application/json",
                                                             Body=b'{"op": "echo", "value": 7}')
    wait_for(lambda: dep.clients.s3.list_objects_v2(Bucket=dep.bucket, Prefix="out/").get("KeyCount"),
             what="the output to be written")
    dep.clients = restart(state_dir, kill=False)
    [note] = dep.notifications(1)
    assert note["inferenceId"] == answer["InferenceId"]


def test_the_journal_holds_no_credentials(state_dir, tmp_path):
    clients = Clients(daemon.start(state_dir)["url"])
    create_deployment(clients, tmp_path)
    journal = (state_dir / "journal.jsonl").read_text()
    assert "CreateEndpoint" in journal
    assert "Signature=" not in journal and "testing/" not in journal


def test_a_deleted_endpoint_is_not_started_again_by_a_restart(state_dir, tmp_path):
    clients = Clients(daemon.start(state_dir)["url"])
    gone = create_deployment(clients, tmp_path)
    kept = create_deployment(clients, tmp_path)
    clients.sagemaker.delete_endpoint(EndpointName=gone.name)
    clients = restart(state_dir, kill=False)
    names = [e["EndpointName"] for e in clients.sagemaker.list_endpoints()["Endpoints"]]
    assert names == [kept.name]
    clients.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=kept.name, WaiterConfig={"Delay": 1})
    assert (state_dir / "endpoints" / "us-east-1" / gone.name / "logs").exists()
    log_files = list((state_dir / "endpoints" / "us-east-1" / gone.name / "logs").iterdir())
    assert len(log_files) == 1  # its one instance from before the restart; none started by the replay
