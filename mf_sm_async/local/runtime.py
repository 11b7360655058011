"""The asynchronous runtime of one endpoint: its queue, its instances and their workers.

Each instance is a model-server process with ``MaxConcurrentInvocationsPerInstance`` worker threads
in the daemon; a worker takes the oldest queued request, reads its payload (inline or from S3), POSTs
it to its instance, writes the result to S3OutputPath (or the error to S3FailurePath) and publishes
the SNS notification. Requests that wait longer than RequestTTLSeconds expire to the failure path.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .clock import Clock
from .instances import Instance, InstanceFailed, InstanceGone, InvocationTimedOut, tail
from .invocation import AsyncRequest, parse_s3_uri
from .notifications import Notifier, inference_message, iso_now, test_message
from .objects import ObjectNotFound, ObjectStore
from .wire import AwsError

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT = 4  # AWS picks a default when ClientConfig is absent; we document 4


@dataclass
class EndpointSettings:
    """What an endpoint config says, reduced to what the runtime needs."""
    region: str
    endpoint_name: str
    variant_name: str
    initial_instances: int
    model_data_url: str | None
    model_env: dict
    async_config: dict | None
    max_concurrent: int = DEFAULT_MAX_CONCURRENT

    @property
    def output_path(self) -> str:
        return self.async_config["OutputConfig"]["S3OutputPath"]

    @property
    def failure_path(self) -> str:
        out = self.async_config["OutputConfig"]
        return out.get("S3FailurePath") or out["S3OutputPath"]

    @property
    def notification(self) -> dict:
        if not self.async_config:
            return {}
        return self.async_config["OutputConfig"].get("NotificationConfig") or {}


def join_s3(base: str, *parts: str | None) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


def output_location(settings: EndpointSettings, request: AsyncRequest) -> str:
    return join_s3(settings.output_path, request.output_path_extension,
                   request.filename or f"{request.inference_id}.out")


def failure_location(settings: EndpointSettings, request: AsyncRequest) -> str:
    return join_s3(settings.failure_path, request.output_path_extension, f"{request.inference_id}-error.out")


@dataclass
class Counters:
    received: int = 0
    processed: int = 0
    failed: int = 0
    expired: int = 0
    per_inference_id: collections.Counter = field(default_factory=collections.Counter)


class EndpointRuntime:
    def __init__(self, settings: EndpointSettings, *, store: ObjectStore, notifier: Notifier,
                 clock: Clock, work_dir: Path, on_status):
        self.settings = settings
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.work_dir = work_dir
        self._on_status = on_status  # callable(status, failure_reason, current, desired)
        self._queue: collections.deque[AsyncRequest] = collections.deque()
        self._cond = threading.Condition()
        self._instances: list[Instance] = []
        self._stopping = threading.Event()
        self._model_lock = threading.Lock()
        self.desired = settings.initial_instances
        self.counters = Counters()
        self._sweeper = threading.Thread(target=self._expire_loop, daemon=True,
                                         name=f"expire-{settings.endpoint_name}")

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Bring up the initial instances in the background: Creating -> InService or Failed."""
        self._report("Creating")
        threading.Thread(target=self._start_instances, args=(self.desired, "InService"), daemon=True,
                         name=f"create-{self.settings.endpoint_name}").start()
        self._sweeper.start()
        self._publish_test_notifications()

    def _model_dir(self) -> Path:
        """The model.tar.gz of the model, unpacked once per endpoint settings (like /opt/ml/model)."""
        with self._model_lock:
            return self._unpack_model_once(self.settings.model_data_url)

    def _unpack_model_once(self, url: str | None) -> Path:
        target = self.work_dir / "model" / hashlib.sha256((url or "").encode()).hexdigest()[:16]
        if (target / ".unpacked").exists():
            return target
        if not url:
            raise InstanceFailed("the model has no ModelDataUrl: the emulator serves a model.tar.gz "
                                 "holding code/inference.py")
        try:
            bucket, key = parse_s3_uri(url, "ModelDataUrl")
            data, _ = self.store.get(bucket, key)
        except (ObjectNotFound, AwsError) as exc:
            raise InstanceFailed(f"Could not download model data from {url}: {exc}") from None
        from ..model import unpack_model

        archive = self.work_dir / "model.tar.gz"
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(data)
        try:
            unpack_model(archive, target)
        except Exception as exc:
            raise InstanceFailed(f"Could not unpack model data from {url}: {exc}") from None
        finally:
            archive.unlink(missing_ok=True)
        (target / ".unpacked").touch()
        return target

    def _start_instances(self, count: int, then_status: str) -> None:
        try:
            started = [self._launch() for _ in range(count)]
        except InstanceFailed as exc:
            if not self._stopping.is_set():
                self._report("Failed", f"The primary container for production variant "
                             f"{self.settings.variant_name} did not pass the ping health check. "
                             f"Last lines of its log:\n{exc}")
            return
        with self._cond:
            self._instances.extend(started)
        for instance in started:
            self._start_workers(instance)
        self._report(then_status)

    def _launch(self) -> Instance:
        instance = Instance(self._model_dir(), self.work_dir / "logs", self.settings.model_env)
        instance.start()
        instance.wait_ready()
        return instance

    def _start_workers(self, instance: Instance) -> None:
        for n in range(self.settings.max_concurrent):
            threading.Thread(target=self._worker, args=(instance,), daemon=True,
                             name=f"{instance.instance_id}-w{n}").start()

    def set_desired(self, count: int) -> None:
        """UpdateEndpointWeightsAndCapacities: Updating, start or stop instances, InService."""
        self.desired = count
        self._report("Updating")
        with self._cond:
            surplus = self._instances[count:]
            del self._instances[count:]
            missing = count - len(self._instances)
            self._cond.notify_all()
        for instance in surplus:
            instance.stop()
        if missing > 0:
            threading.Thread(target=self._start_instances, args=(missing, "InService"), daemon=True).start()
        else:
            self._report("InService")

    def replace_settings(self, settings: EndpointSettings) -> None:
        """UpdateEndpoint: new instances from the new config take over, old ones stop."""
        self._report("Updating")
        old_settings, self.settings = self.settings, settings
        try:
            fresh = [self._launch() for _ in range(settings.initial_instances)]
        except InstanceFailed as exc:
            self.settings = old_settings
            self._report("InService", f"UpdateEndpoint failed: {exc}")
            return
        with self._cond:
            old, self._instances = self._instances, fresh
            self.desired = len(fresh)
            self._cond.notify_all()
        for instance in fresh:
            self._start_workers(instance)
        for instance in old:
            instance.stop()
        self._report("InService")

    def _replace(self, instance: Instance) -> None:
        """A dead instance leaves the fleet (its workers stop) and a new one is started in its place."""
        with self._cond:
            if instance not in self._instances:
                return  # another worker of the same instance got here first
            self._instances.remove(instance)
            self._cond.notify_all()
        log.warning("instance %s of %s died; replacing it", instance.instance_id, self.settings.endpoint_name)
        if not self._stopping.is_set() and len(self._instances) < self.desired:
            threading.Thread(target=self._start_instances, args=(1, "InService"), daemon=True).start()

    def stop(self) -> None:
        """DeleteEndpoint: stop every instance; queued requests are dropped, as on AWS."""
        self._stopping.set()
        with self._cond:
            instances, self._instances = self._instances, []
            self._queue.clear()
            self._cond.notify_all()
        for instance in instances:
            instance.stop()
        shutil.rmtree(self.work_dir / "model", ignore_errors=True)

    @property
    def current_instances(self) -> int:
        return sum(1 for i in self._instances if i.alive)

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def _report(self, status: str, reason: str | None = None) -> None:
        self._on_status(status, reason, self.current_instances, self.desired)

    # requests --------------------------------------------------------------------------------
    def submit(self, request: AsyncRequest) -> None:
        request.received_at = self.clock.now()
        request.received_time = iso_now()
        with self._cond:
            self.counters.received += 1
            self._queue.append(request)
            self._cond.notify()

    def _take(self, instance: Instance) -> AsyncRequest | None:
        with self._cond:
            while not self._queue:
                if self._stopping.is_set() or instance not in self._instances:
                    return None
                self._cond.wait(0.5)
            if instance not in self._instances:
                return None
            return self._queue.popleft()

    def _expired(self, request: AsyncRequest) -> bool:
        return self.clock.now() - request.received_at > self.clock.emulated(request.ttl_seconds)

    def _expire_loop(self) -> None:
        while not self._stopping.wait(0.2):
            with self._cond:
                expired = [r for r in self._queue if self._expired(r)]
                for request in expired:
                    self._queue.remove(request)
            for request in expired:
                self._expire(request)

    def _expire(self, request: AsyncRequest) -> None:
        self.counters.expired += 1
        self._fail(request, b"Request expired: it was not processed within its RequestTTLSeconds "
                   b"(%d s)" % request.ttl_seconds,
                   f"ClientError: Request expired after RequestTTLSeconds ({request.ttl_seconds}s) "
                   "before a worker was available.")

    def _worker(self, instance: Instance) -> None:
        conn = instance.connect()
        while True:
            request = self._take(instance)
            if request is None:
                conn.close()
                return
            if self._expired(request):
                self._expire(request)
                continue
            try:
                self._process(instance, conn, request)
            except InstanceGone as exc:
                conn = instance.connect()
                self._instance_lost(instance, request, exc)
            except Exception as exc:  # never let a worker die with a request in hand
                log.exception("request %s failed inside the emulator", request.inference_id)
                self._fail(request, f"InternalFailure: {exc}".encode(), f"ServerError: {exc}")

    def _instance_lost(self, instance: Instance, request: AsyncRequest, exc: Exception) -> None:
        if not instance.alive:
            self._replace(instance)
        if request.attempts < 2:
            with self._cond:
                self._queue.appendleft(request)  # retried on a healthy instance
                self._cond.notify()
            return
        self._fail(request, f"The model server process died while processing the request: {exc}\n"
                   f"{tail(instance.log_path)}".encode(),
                   "ServerError: the model container exited while processing the request.")

    def _payload(self, request: AsyncRequest) -> tuple[bytes, str | None]:
        if request.inline_body is not None:
            return request.inline_body, request.content_type
        bucket, key = parse_s3_uri(request.input_location, "inputLocation")
        body, stored_type = self.store.get(bucket, key)
        return body, request.content_type or stored_type

    def _process(self, instance: Instance, conn, request: AsyncRequest) -> None:
        request.attempts += 1
        self.counters.per_inference_id[request.inference_id] += 1
        try:
            body, content_type = self._payload(request)
        except ObjectNotFound as exc:
            self._fail(request, f"Failed to download the input from {request.input_location}: {exc}".encode(),
                       f"ClientError: Failed to download the input payload from {request.input_location}.")
            return
        try:
            response = instance.invoke(conn, body, content_type=content_type, accept=request.accept,
                                       custom_attributes=request.custom_attributes,
                                       timeout=request.invocation_timeout_seconds)
        except InvocationTimedOut:
            self._fail(request, b"Model did not respond within InvocationTimeoutSeconds (%d s)"
                       % request.invocation_timeout_seconds,
                       f"ClientError: Request timed out after InvocationTimeoutSeconds "
                       f"({request.invocation_timeout_seconds}s).")
            return
        if response.status == 200:
            self._succeed(request, response.body, response.content_type)
        else:
            first = response.body.decode("utf-8", "replace").strip().splitlines()[:1]
            self._fail(request, response.body,
                       f"ClientError: Received server error ({response.status}) from primary with "
                       f"message \"{first[0] if first else ''}\".", response.content_type)

    def _succeed(self, request: AsyncRequest, body: bytes, content_type: str | None) -> None:
        location = output_location(self.settings, request)
        bucket, key = parse_s3_uri(location, "outputLocation")
        try:
            self.store.put(bucket, key, body, content_type)
        except Exception as exc:
            self._fail(request, f"Could not write the output to {location}: {exc}".encode(),
                       f"ClientError: Could not write the output to {location}.")
            return
        self.counters.processed += 1
        note = self.settings.notification
        include = "SUCCESS_NOTIFICATION_TOPIC" in (note.get("IncludeInferenceResponseIn") or [])
        self.notifier.publish(note.get("SuccessTopic"), self._message(
            request, content_type, "outputLocation", location, None, body if include else None))

    def _fail(self, request: AsyncRequest, body: bytes, reason: str, content_type: str | None = None) -> None:
        self.counters.failed += 1
        location = failure_location(self.settings, request)
        bucket, key = parse_s3_uri(location, "failureLocation")
        try:
            self.store.put(bucket, key, body, content_type or "text/plain; charset=utf-8")
        except Exception as exc:
            log.error("could not write failure of %s to %s: %s", request.inference_id, location, exc)
        note = self.settings.notification
        include = "ERROR_NOTIFICATION_TOPIC" in (note.get("IncludeInferenceResponseIn") or [])
        self.notifier.publish(note.get("ErrorTopic"), self._message(
            request, content_type, "failureLocation", location, reason, body if include else None))

    def _message(self, request, content_type, location_key, location, reason, body) -> dict:
        return inference_message(
            region=self.settings.region, endpoint_name=self.settings.endpoint_name,
            inference_id=request.inference_id, received_time=request.received_time,
            content_type=request.content_type, input_location=request.input_location,
            output_content_type=content_type, location_key=location_key, location=location,
            failure_reason=reason, response_body=body)

    def _publish_test_notifications(self) -> None:
        note = self.settings.notification
        for topic in {note.get("SuccessTopic"), note.get("ErrorTopic")} - {None}:
            self.notifier.publish(topic, test_message(self.settings.region, self.settings.endpoint_name))
