"""AsyncEndpoint: a model on an asynchronous endpoint that costs nothing idle and never outlives its use.

::

    from sklearn.linear_model import LogisticRegression
    from mf_sm_async import AsyncEndpoint

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    with AsyncEndpoint.deploy(model=model, max_instances=2) as ep:   # local emulator by default
        print(ep.status().instances)
    # on exit: teardown="zero" (scaled to zero, kept for reuse); "delete" removes everything it made

``deploy`` creates, in order and tagged ``mf-sm-async:managed``: the S3 prefix, the model, the SNS
success / error topics (each ``predict`` run subscribes a queue of its own to them), the endpoint config
with the full AsyncInferenceConfig, the endpoint (waited for until InService), then the scalable target,
a target-tracking policy on ApproximateBacklogSizePerInstance and the step policy + CloudWatch alarm on
HasBacklogWithoutCapacity so the endpoint leaves zero by itself. A failure half way deletes what it
created and says which step failed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass

from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .config import EndpointSpec
from .errors import DeployError, TargetError
from .lease import Lease
from .model import resolve_model

log = logging.getLogger(__name__)

MANAGED_TAG = "mf-sm-async:managed"
VARIANT = "AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass(frozen=True)
class EndpointStatus:
    name: str
    status: str
    instances: int
    desired_instances: int
    backlog: float | None
    oldest_request_age_seconds: float | None
    recent_failures: float | None
    failure_reason: str | None = None


@dataclass
class Resources:
    """Names of everything an endpoint of ours owns (all derived from the endpoint name)."""
    name: str
    bucket: str
    prefix: str
    region: str
    account: str

    @property
    def model(self) -> str:
        return self.name

    @property
    def config(self) -> str:
        return self.name

    @property
    def success_topic(self) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{self.name}-success"

    @property
    def error_topic(self) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{self.name}-error"

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.name}/variant/{VARIANT}"

    @property
    def alarm(self) -> str:
        return f"{self.name}-has-backlog-without-capacity"

    @property
    def output_path(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/outputs"

    @property
    def failure_path(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/failures"


def endpoint_name(stem: str, digest: str, spec: EndpointSpec) -> str:
    """Readable stem + short hash of the model and its config: at most 63 characters."""
    fields = {k: v for k, v in asdict(spec).items() if k not in ("teardown", "target", "name")}
    if fields.get("kms_key_id") is None:
        fields.pop("kms_key_id", None)  # names from before the option existed stay the same
    config = json.dumps(fields, sort_keys=True, default=str)
    short = hashlib.sha256((digest + config).encode()).hexdigest()[:10]
    return f"mfsa-{stem[:46].strip('-')}-{short}"


class AsyncEndpoint:
    def __init__(self, resources: Resources, spec: EndpointSpec, *, target: str, owned: bool):
        self.resources = resources
        self.spec = spec
        self.target = target
        self.owned = owned
        self.teardown_mode = spec.teardown if owned else "keep"
        self.lease: Lease | None = None
        self._url: str | None = None

    def _hold(self) -> "AsyncEndpoint":
        """Take this holder's lease on the endpoint (renewed in the background until teardown)."""
        s3 = self._client("s3")
        self._url = s3.meta.endpoint_url  # where the lease lives: see teardown
        self.lease = Lease(s3, self.resources.bucket, self.resources.prefix).acquire()
        return self

    @property
    def name(self) -> str:
        return self.resources.name

    def _client(self, service: str):
        # S3 writes carry the endpoint's KMS key (SSE-KMS), whoever makes them: model, payloads, journal, leases
        return aws.client(service, self.target, kms_key_id=self.spec.kms_key_id if service == "s3" else None)

    # creation ----------------------------------------------------------------------------------
    @classmethod
    def deploy(cls, model, **options) -> "AsyncEndpoint":
        """Deploy ``model`` (estimator, directory, s3:// tarball or model name); see the module doc."""
        spec = EndpointSpec.from_kwargs(**options)
        target = aws.resolve_target(spec.target)
        role = spec.resolve_role(target)
        with tempfile.TemporaryDirectory() as work:
            source = resolve_model(model, work)
            name = spec.name or endpoint_name(source.stem, source.digest, spec)
            account = aws.client("sts", target).get_caller_identity()["Account"]
            region = aws.client("sagemaker", target).meta.region_name
            bucket, _, base = (spec.s3_prefix or f"s3://mf-sm-async-{account}-{region}/mf-sm-async")[5:].partition("/")
            resources = Resources(name=name, bucket=bucket, prefix=f"{base or 'mf-sm-async'}/{name}", region=region,
                                  account=account)
            endpoint = cls(resources, spec, target=target, owned=True)
            if endpoint._reusable():
                log.info("re-using running endpoint %s", name)
                endpoint._scaling(enable=True)
                return endpoint._hold()
            _Builder(endpoint, source, role).build()
        return endpoint._hold()

    @classmethod
    def attach(cls, name: str, *, target: str | None = None, hold: bool = True) -> "AsyncEndpoint":
        """An existing endpoint: nothing is created, and teardown defaults to ``keep``. ``hold`` takes a
        lease, so others' teardowns leave the endpoint up while this holder uses it."""
        target = aws.resolve_target(target)
        sagemaker = aws.client("sagemaker", target)
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as error:
            raise DeployError(f"cannot attach to endpoint {name!r}: {error.response['Error']['Message']}",
                              "`mf-sm-async endpoints list` shows the endpoints there are") from None
        if "AsyncInferenceConfig" not in described:
            raise DeployError(f"endpoint {name!r} is not an asynchronous endpoint (no AsyncInferenceConfig)")
        output = described["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"]
        bucket, _, prefix = output[5:].partition("/")
        arn_parts = described["EndpointArn"].split(":")
        resources = Resources(name=name, bucket=bucket, prefix=prefix.rsplit("/outputs", 1)[0],
                              region=arn_parts[3], account=arn_parts[4])
        kms_key_id = described["AsyncInferenceConfig"]["OutputConfig"].get("KmsKeyId")
        endpoint = cls(resources, EndpointSpec(name=name, teardown="keep", kms_key_id=kms_key_id), target=target,
                       owned=False)
        return endpoint._hold() if hold else endpoint

    def _reusable(self) -> bool:
        try:
            described = self._client("sagemaker").describe_endpoint(EndpointName=self.name)
        except ClientError:
            return False
        if described["EndpointStatus"] in ("InService", "Updating", "Creating"):
            self._wait_in_service()
            return True
        raise DeployError(f"endpoint {self.name} exists with status {described['EndpointStatus']}",
                          f"delete it (`mf-sm-async endpoints teardown {self.name} --delete`) and deploy again")

    def _wait_in_service(self, timeout: float = 1800.0) -> None:
        sagemaker, delay = self._client("sagemaker"), (0.2 if self.target == "local" else 15.0)
        deadline = time.monotonic() + timeout
        while True:
            described = sagemaker.describe_endpoint(EndpointName=self.name)
            if described["EndpointStatus"] == "InService":
                return
            if described["EndpointStatus"] == "Failed":
                raise DeployError(f"endpoint {self.name} failed: {described.get('FailureReason', 'no reason given')}")
            if time.monotonic() > deadline:
                raise DeployError(f"endpoint {self.name} not InService after {timeout:.0f}s "
                                  f"(status {described['EndpointStatus']})")
            time.sleep(delay)

    # what it is doing ----------------------------------------------------------------------------
    def status(self) -> EndpointStatus:
        """Instances (current / desired), backlog, age of the oldest request, recent failures."""
        described = self._client("sagemaker").describe_endpoint(EndpointName=self.name)
        variant = (described.get("ProductionVariants") or [{}])[0]
        return EndpointStatus(
            name=self.name, status=described["EndpointStatus"],
            instances=int(variant.get("CurrentInstanceCount", 0)),
            desired_instances=int(variant.get("DesiredInstanceCount", 0)),
            backlog=self._metric("ApproximateBacklogSize", "Maximum"),
            oldest_request_age_seconds=self._metric("ApproximateAgeOfOldestRequest", "Maximum"),
            recent_failures=self._metric("InvocationFailures", "Sum", minutes=15),
            failure_reason=described.get("FailureReason"))

    def _metric(self, metric: str, statistic: str, minutes: int = 5) -> float | None:
        now = dt.datetime.now(dt.timezone.utc)
        points = self._client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName=metric, Dimensions=[{"Name": "EndpointName", "Value": self.name}],
            StartTime=now - dt.timedelta(minutes=minutes), EndTime=now + dt.timedelta(minutes=1),
            Period=60 * (minutes + 1), Statistics=[statistic])["Datapoints"]
        return max(p[statistic] for p in points) if points else None

    # scoring ------------------------------------------------------------------------------------
    def predict(self, frame, **options):
        """Score every row of ``frame`` through the endpoint; returns a ``BatchResult``
        (``predictions`` aligned to ``frame.index``, ``failures``, ``metrics``). Options: see
        ``mf_sm_async.config.BatchSpec`` (rows_per_payload, content_type, max_in_flight, resume, ...).

        >>> result = ep.predict(df, rows_per_payload=500)             # doctest: +SKIP
        >>> result.predictions.join(df)                              # doctest: +SKIP
        """
        from .batch.engine import predict
        from .config import BatchSpec

        return predict(self, frame, BatchSpec.from_kwargs(**options))

    def invoke_async(self, payload, **options):
        """Send one raw payload (bytes, a local file path, or an s3:// URI); returns an ``Invocation``
        whose ``result(timeout)`` gives the output's bytes.

        >>> ep.invoke_async(b'[[1, 2]]', content_type="application/json").result(60)  # doctest: +SKIP
        """
        from .batch.endpoint_io import EndpointIO
        from .batch.single import invoke_async

        return invoke_async(self, EndpointIO.of(self), payload, **options)

    # the end of it -------------------------------------------------------------------------------
    def scale_to_zero(self) -> None:
        """Zero instances now; the endpoint stays, and the next invocation wakes it."""
        self._scaling(enable=False)
        sagemaker = self._client("sagemaker")
        described = sagemaker.describe_endpoint(EndpointName=self.name)
        if described["ProductionVariants"][0].get("DesiredInstanceCount", 0) != 0:
            sagemaker.update_endpoint_weights_and_capacities(EndpointName=self.name, DesiredWeightsAndCapacities=[
                {"VariantName": VARIANT, "DesiredInstanceCount": 0}])

    def _scaling(self, enable: bool) -> None:
        """Switch the wake-up alarm: off at teardown, so leftover queued requests cannot restart
        (and bill) the endpoint until their TTL; on again when it is used."""
        cloudwatch = self._client("cloudwatch")
        if not cloudwatch.describe_alarms(AlarmNames=[self.resources.alarm])["MetricAlarms"]:
            return
        if enable:
            cloudwatch.enable_alarm_actions(AlarmNames=[self.resources.alarm])
        else:
            cloudwatch.disable_alarm_actions(AlarmNames=[self.resources.alarm])

    def delete(self) -> None:
        """Delete the endpoint and everything deploy made for it; results in S3 are kept."""
        _delete_all(self)

    def teardown(self, mode: str | None = None) -> None:
        """Apply ``zero`` / ``delete`` / ``keep`` (default: this endpoint's teardown); safe to repeat.

        Releases this holder's lease first; while another holder's lease is live the endpoint is left
        as it is (that holder's own teardown, or the expiry of its lease, decides). ``scale_to_zero()``
        and ``delete()`` called directly do not ask."""
        mode = mode or self.teardown_mode
        lost = aws.lost(self.target, self._url)
        if lost:
            # Nothing can be done there now, and asking would sit out botocore's retries. The lease expires
            # by itself; the emulator, once started again, scales an endpoint no one leases to zero.
            if self.lease is not None:
                self.lease.abandon()
                self.lease = None
            log.warning("teardown of %s skipped: %s", self.name, lost)
            return
        try:
            if self.lease is not None:
                lease, self.lease = self.lease, None
                try:
                    others = lease.other_live_holders()
                finally:
                    lease.release()
                if others and mode != "keep":
                    log.info("endpoint %s left as it is: still leased by %s", self.name, ", ".join(others))
                    return
            if mode == "delete":
                self.delete()
            elif mode == "zero":
                try:
                    self.scale_to_zero()
                except ClientError as error:
                    if "Could not find" not in str(error):
                        raise
        except BotoCoreError as error:
            raise TargetError(f"teardown of {self.name} failed: {error}",
                              f"`mf-sm-async endpoints teardown {self.name}` when the target answers again; "
                              "until then the lease expires by itself") from None

    def __enter__(self) -> "AsyncEndpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def __repr__(self) -> str:
        return f"AsyncEndpoint({self.name!r}, target={self.target!r}, teardown={self.teardown_mode!r})"


@dataclass(frozen=True)
class ManagedEndpoint:
    name: str
    status: str
    age_seconds: float
    instances: int
    backlog: float | None


def list_managed(target: str | None = None) -> list[ManagedEndpoint]:
    """The endpoints deploy made (tagged ``mf-sm-async:managed``), oldest first."""
    sagemaker = aws.client("sagemaker", target)
    found = []
    for page in sagemaker.get_paginator("list_endpoints").paginate():
        for summary in page["Endpoints"]:
            tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=summary["EndpointArn"])["Tags"]}
            if tags.get(MANAGED_TAG) != "true":
                continue
            created = summary["CreationTime"]
            status = AsyncEndpoint.attach(summary["EndpointName"], target=target, hold=False).status()
            found.append(ManagedEndpoint(summary["EndpointName"], status.status,
                                         (dt.datetime.now(created.tzinfo) - created).total_seconds(),
                                         status.instances, status.backlog))
    return sorted(found, key=lambda e: -e.age_seconds)


def _attach_managed(name: str, target: str | None) -> AsyncEndpoint:
    """Ours (tagged) or a DeployError; holds no lease of its own."""
    ep = AsyncEndpoint.attach(name, target=target, hold=False)
    arn = ep._client("sagemaker").describe_endpoint(EndpointName=name)["EndpointArn"]
    tags = {t["Key"]: t["Value"] for t in ep._client("sagemaker").list_tags(ResourceArn=arn)["Tags"]}
    if tags.get(MANAGED_TAG) != "true":
        raise DeployError(f"endpoint {name} was not made by mf-sm-async (no {MANAGED_TAG} tag): left alone",
                          "tear it down with the tool that made it")
    return ep


def teardown_managed(name: str, *, delete: bool, target: str | None = None) -> None:
    """Scale one of our endpoints to zero, or delete it and everything deploy made for it: an explicit
    order, carried out even while other holders lease it."""
    ep = _attach_managed(name, target)
    ep.delete() if delete else ep.scale_to_zero()


def container_logs(name: str, *, target: str | None = None, lines: int = 50) -> str:
    """The model container's last log lines: the model-server processes' output on the emulator, the
    endpoint's CloudWatch log group (/aws/sagemaker/Endpoints/NAME) on AWS."""
    target = aws.resolve_target(target)
    if target == "local":
        from pathlib import Path

        from .local import daemon
        from .local.instances import tail

        state_dir = Path(daemon.start()["state_dir"])
        logs = sorted((state_dir / "endpoints").glob(f"*/{name}/logs/*.log"), key=lambda p: p.stat().st_mtime)
        text = "\n".join(f"== instance {p.stem} ==\n{tail(p, lines)}" for p in logs[-3:])
    else:
        text = _cloudwatch_tail(aws.client("logs", target), f"/aws/sagemaker/Endpoints/{name}", lines)
    return text or f"(no container log for {name} yet)"


def _cloudwatch_tail(logs, group: str, lines: int, streams: int = 3) -> str:
    """The last ``lines`` events of the most recently written streams (one per instance) of ``group``."""
    try:
        newest = logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", descending=True,
                                           limit=streams)["logStreams"]
        parts = []
        for stream in reversed(newest):
            events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"],
                                         startFromHead=False, limit=lines)["events"]
            parts.append(f"== {stream['logStreamName']} ==\n" + "\n".join(e["message"] for e in events))
    except ClientError as error:
        raise DeployError(f"no container log in {group}: {error.response['Error']['Message']}") from None
    return "\n".join(parts)


def cleanup(older_than_seconds: float, target: str | None = None) -> tuple[list[str], list[str]]:
    """Delete what runs that died left behind: the notification queues (``queue mfsa-run-...``, with their
    subscriptions) of runs whose lease has expired, whatever their age, then our endpoints older than
    ``older_than_seconds`` that no live holder leases. Returns (deleted, skipped because leased)."""
    from .batch.completion import sweep_orphaned_queues

    def locate(name: str) -> tuple[str, str] | None:
        try:
            ep = AsyncEndpoint.attach(name, target=target, hold=False)
        except DeployError:
            return None  # the endpoint is gone: its runs' queues are orphans
        return ep.resources.bucket, ep.resources.prefix

    deleted = [f"queue {name}" for name in sweep_orphaned_queues(
        aws.client("sqs", target), aws.client("sns", target), aws.client("s3", target), locate)]
    leased = []
    for row in list_managed(target):
        if row.age_seconds <= older_than_seconds:
            continue
        ep = _attach_managed(row.name, target)
        if Lease(ep._client("s3"), ep.resources.bucket, ep.resources.prefix).other_live_holders():
            leased.append(row.name)
        else:
            ep.delete()
            deleted.append(row.name)
    return deleted, leased


from .endpoint_build import _Builder, _delete_all  # noqa: E402  (the creation and deletion steps)
