"""The asynchronous runtime of one endpoint: its queue, its fleet of instances and their workers.

Each instance is a model-server process with ``MaxConcurrentInvocationsPerInstance`` worker threads
in the daemon; a worker takes the oldest queued request, reads its payload (inline or from S3), POSTs
it to its instance and hands the outcome to :class:`ResultWriter`. Requests that wait longer than
RequestTTLSeconds expire to the failure path. The fleet follows ``desired``: new instances start,
surplus ones drain (finish what they hold) before they stop, dead ones are replaced and the request
a dead one held is retried once elsewhere.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .clock import Clock
from .containers import ContainerUnavailable, plan_launch
from .instances import Instance, InstanceFailed, InstanceGone, InvocationTimedOut, Launch, tail
from .invocation import MAX_INPUT_BYTES, AsyncRequest, parse_s3_uri
from .notifications import Notifier, iso_now, test_message
from .objects import ObjectNotFound, ObjectStore
from .results import EndpointSettings, ResultWriter
from .wire import AwsError

log = logging.getLogger(__name__)

# What S3 answers for an object stored without a Content-Type (AWS: binary/octet-stream; the emulator's
# rclone-backed S3: application/octet-stream): no type declared.
UNDECLARED_S3_TYPES = ("binary/octet-stream", "application/octet-stream")
DRAIN_SECONDS = 3600  # an instance being scaled in finishes its requests (InvocationTimeoutSeconds <= 3600)


class PayloadTooLarge(Exception):
    """An InputLocation object over the 1 GB limit."""


@dataclass
class Counters:
    received: int = 0
    processed: int = 0
    failed: int = 0
    expired: int = 0
    instance_deaths: int = 0
    per_inference_id: collections.Counter = field(default_factory=collections.Counter)           # runs
    received_per_inference_id: collections.Counter = field(default_factory=collections.Counter)  # requests


class EndpointRuntime:
    def __init__(self, settings: EndpointSettings, *, store: ObjectStore, writer: ResultWriter,
                 notifier: Notifier, clock: Clock, work_dir: Path, on_status, request_log=None):
        self.settings = settings
        self.store = store
        self.writer = writer
        self.notifier = notifier
        self.clock = clock
        self.work_dir = work_dir
        self._on_status = on_status  # callable(status, failure_reason)
        self._request_log = request_log
        self._queue: collections.deque[AsyncRequest] = collections.deque()
        self._cond = threading.Condition()
        self._instances: list[Instance] = []
        self._in_flight: collections.Counter[Instance] = collections.Counter()
        self._stopping = threading.Event()
        self._model_lock = threading.Lock()
        self._scale_lock = threading.Lock()
        self.failed = False
        self.desired = settings.initial_instances
        self.counters = Counters()

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Bring up the initial instances in the background: Creating -> InService or Failed."""
        self._on_status("Creating", None)
        threading.Thread(target=self._reconcile, daemon=True, name=f"create-{self.settings.endpoint_name}").start()
        threading.Thread(target=self._expire_loop, daemon=True, name=f"expire-{self.settings.endpoint_name}").start()
        note = self.settings.notification
        for topic in {note.get("SuccessTopic"), note.get("ErrorTopic")} - {None}:
            self.notifier.publish(topic, test_message(self.settings.region, self.settings.endpoint_name))

    def set_desired(self, count: int) -> None:
        """UpdateEndpointWeightsAndCapacities or a scaling policy: Updating until the fleet matches."""
        if self._stopping.is_set():
            return
        self.desired = count
        self._on_status("Updating", None)
        threading.Thread(target=self._reconcile, daemon=True, name=f"scale-{self.settings.endpoint_name}").start()

    def replace_settings(self, settings: EndpointSettings) -> None:
        """UpdateEndpoint: instances of the new config take over, the old ones drain and stop."""
        self._on_status("Updating", None)
        with self._scale_lock:
            old_settings, self.settings = self.settings, settings
            try:
                fresh = self._launch_many(settings.initial_instances)
            except InstanceFailed as exc:
                self.settings = old_settings
                self._on_status("InService", f"UpdateEndpoint failed: {exc}")
                return
            with self._cond:
                old, self._instances = self._instances, fresh
                self.desired = len(fresh)
                self._cond.notify_all()
            for instance in fresh:
                self._start_workers(instance)
            for instance in old:
                self._drain_and_stop(instance)
        self._on_status("InService", None)

    def stop(self, forget_requests: bool = True) -> None:
        """DeleteEndpoint: stop every instance and drop the queue, as on AWS. A daemon shutdown
        (``forget_requests=False``) keeps unfinished requests in the request log for the next start."""
        self._stopping.set()
        with self._cond:
            instances, self._instances = self._instances, []
            for request in self._queue if forget_requests else ():
                self._forget(request)
            self._queue.clear()
            self._cond.notify_all()
        for instance in instances:
            instance.stop()
        shutil.rmtree(self.work_dir / "model", ignore_errors=True)

    # the fleet -------------------------------------------------------------------------------
    def _reconcile(self) -> None:
        """Start or drain instances until the fleet has ``desired`` of them, then report the status."""
        with self._scale_lock:
            if self._stopping.is_set():
                return
            with self._cond:
                serving = [i for i in self._instances if i.alive]
                surplus = sorted(serving, key=lambda i: self._in_flight[i])[:max(0, len(serving) - self.desired)]
                self._instances = [i for i in serving if i not in surplus]
                missing = self.desired - len(self._instances)
                self._cond.notify_all()
            for instance in surplus:
                threading.Thread(target=self._drain_and_stop, args=(instance,), daemon=True).start()
            try:
                fresh = self._launch_many(missing)
            except InstanceFailed as exc:
                if not self._stopping.is_set():
                    self.failed = not self._instances
                    reason = str(exc) if isinstance(exc, ContainerUnavailable) else (
                        f"The primary container for production variant {self.settings.variant_name} "
                        f"did not pass the ping health check. Last lines of its log:\n{exc}")
                    self._on_status("Failed" if self.failed else "InService", reason)
                return
            with self._cond:
                self._instances.extend(fresh)
                self._cond.notify_all()
            for instance in fresh:
                self._start_workers(instance)
        if not self._stopping.is_set() and self.desired == self.current_instances:
            self._on_status("InService", None)

    def _launch_many(self, count: int) -> list[Instance]:
        """Start ``count`` instances in parallel (as AWS does); all or none."""
        if count <= 0:
            return []
        launch = self._launch()
        instances = [Instance(launch, self.work_dir / "logs", self.settings.model_env) for _ in range(count)]
        for instance in instances:
            instance.start()
        errors = []
        for instance in instances:
            try:
                instance.wait_ready()
            except InstanceFailed as exc:
                errors.append(exc)
        if errors:
            for instance in instances:
                instance.stop()
            raise errors[0]
        return instances

    def _drain_and_stop(self, instance: Instance) -> None:
        deadline = self.clock.now() + DRAIN_SECONDS
        with self._cond:
            while self._in_flight[instance] and self.clock.now() < deadline and instance.alive:
                self._cond.wait(0.2)
        instance.stop()

    def check_health(self) -> None:
        """Replace instances whose process died while idle (a busy one is noticed by its worker)."""
        with self._cond:
            dead = [i for i in self._instances if not i.alive]
        for instance in dead:
            self._replace(instance)

    def _replace(self, instance: Instance) -> None:
        with self._cond:
            if instance not in self._instances:
                return  # another worker of the same instance got here first
            self._instances.remove(instance)
            self.counters.instance_deaths += 1
            self._cond.notify_all()
        log.warning("instance %s of %s died; replacing it", instance.instance_id, self.settings.endpoint_name)
        if not self._stopping.is_set():
            threading.Thread(target=self._reconcile, daemon=True).start()

    def _start_workers(self, instance: Instance) -> None:
        for n in range(self.settings.max_concurrent):
            threading.Thread(target=self._worker, args=(instance,), daemon=True,
                             name=f"{instance.instance_id}-w{n}").start()

    def _launch(self) -> Launch:
        """How this endpoint's container image runs locally (see containers.py); the model.tar.gz (and a
        sourcedir.tar.gz) unpacked once per endpoint settings, like /opt/ml/model."""
        with self._model_lock:
            return plan_launch(self.settings.image, self.settings.model_env, self.settings.model_data_url,
                               self._unpack_once)

    def _unpack_once(self, url: str | None, field: str) -> Path:
        """Download and unpack the ``s3://`` tarball ``url`` (named by ``field``) once; None: an empty dir."""
        from ..model import unpack_model

        target = self.work_dir / "model" / hashlib.sha256((url or "").encode()).hexdigest()[:16]
        if (target / ".unpacked").exists():
            return target
        if not url:
            target.mkdir(parents=True, exist_ok=True)
            (target / ".unpacked").touch()
            return target
        archive = self.work_dir / f"{target.name}.tar.gz"
        archive.parent.mkdir(parents=True, exist_ok=True)
        try:
            bucket, key = parse_s3_uri(url, field)
            self.store.download(bucket, key, archive)
        except (ObjectNotFound, AwsError) as exc:
            raise InstanceFailed(f"Could not download {field} {url}: {exc}") from None
        try:
            unpack_model(archive, target)
        except Exception as exc:
            raise InstanceFailed(f"Could not unpack {field} {url}: {exc}") from None
        finally:
            archive.unlink(missing_ok=True)
        (target / ".unpacked").touch()
        return target

    # what CloudWatch and DescribeEndpoint see ---------------------------------------------------
    @property
    def current_instances(self) -> int:
        return sum(1 for i in self._instances if i.alive)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def backlog(self) -> int:
        """Queued plus being processed, as ApproximateBacklogSize counts them."""
        return len(self._queue) + sum(self._in_flight.values())

    def oldest_age(self) -> float:
        """Emulated seconds the oldest queued request has waited."""
        with self._cond:
            oldest = self._queue[0].received_at if self._queue else None
        return 0.0 if oldest is None else (self.clock.now() - oldest) * self.clock.time_scale

    def instance_pids(self) -> list[int]:
        return [i.process.pid for i in self._instances if i.alive]

    # requests --------------------------------------------------------------------------------
    def submit(self, request: AsyncRequest, restored: bool = False) -> None:
        """Queue a request; a ``restored`` one (from before a restart) keeps its age for its TTL."""
        if restored:
            request.received_at = self.clock.now() - (time.time() - request.received_wall)
        else:
            request.received_at, request.received_wall = self.clock.now(), time.time()
            request.received_time = iso_now()
        if self._request_log is not None:
            request.saved_as = self._request_log.save(self.settings.region, request)
        with self._cond:
            self.counters.received += 1
            self.counters.received_per_inference_id[request.inference_id] += 1
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
            self._in_flight[instance] += 1
            return self._queue.popleft()

    def _done(self, instance: Instance) -> None:
        with self._cond:
            self._in_flight[instance] -= 1
            if not self._in_flight[instance]:
                del self._in_flight[instance]
            self._cond.notify_all()

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
        self.counters.expired += 1  # ExpiredRequests, not InvocationFailures
        self._forget(request)
        self.writer.fail(self.settings, request, b"Request expired: it was not processed within its RequestTTLSeconds "
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
            try:
                if self._expired(request):
                    self._expire(request)
                else:
                    self._process(instance, conn, request)
            except InstanceGone as exc:
                conn = instance.connect()
                self._instance_lost(instance, request, exc)
            except Exception as exc:  # never let a worker die with a request in hand
                log.exception("request %s failed inside the emulator", request.inference_id)
                self._fail(request, f"InternalFailure: {exc}".encode(), f"ServerError: {exc}")
            finally:
                self._done(instance)

    def _instance_lost(self, instance: Instance, request: AsyncRequest, exc: Exception) -> None:
        if self._stopping.is_set():
            return  # stopped under it: it stays in the request log (daemon shutdown) or is dropped (delete)
        if instance.wait_exit(1.0):
            # its sockets close a moment before the process can be reaped: wait, or the retry could go
            # to the same dead instance and be counted as the second attempt
            self._replace(instance)
        if request.attempts < 2:
            with self._cond:
                self._queue.appendleft(request)  # retried once, on a healthy instance
                self._cond.notify()
            return
        self._fail(request, f"The model server process died while processing the request: {exc}\n"
                   f"{tail(instance.log_path)}".encode(),
                   "ServerError: the model container exited while processing the request.")

    def _payload(self, request: AsyncRequest):
        """(body, length, content type): inline bytes, or the S3 object as a stream (up to 1 GB).

        A request without ContentType takes the S3 object's Content-Type, unless that is only S3's
        default for an object stored without one; then the container gets none and applies its own
        default (libsvm for XGBoost, JSON for the framework containers), as on AWS."""
        if request.inline_body is not None:
            return request.inline_body, len(request.inline_body), request.content_type
        bucket, key = parse_s3_uri(request.input_location, "inputLocation")
        stream, length, stored_type = self.store.open(bucket, key)
        if length > MAX_INPUT_BYTES:  # refused before a byte reaches the model
            self.store.abandon(stream)
            raise PayloadTooLarge(f"the input is {length:,} bytes; asynchronous inference takes at most "
                                  f"{MAX_INPUT_BYTES:,} bytes (1 GiB)")
        if stored_type and stored_type.split(";")[0].strip().lower() in UNDECLARED_S3_TYPES:
            stored_type = None
        return stream, length, request.content_type or stored_type

    def _process(self, instance: Instance, conn, request: AsyncRequest) -> None:
        request.attempts += 1
        self.counters.per_inference_id[request.inference_id] += 1
        try:
            body, length, content_type = self._payload(request)
        except PayloadTooLarge as exc:
            self._fail(request, f"{exc}: {request.input_location}".encode(),
                       f"ClientError: The input payload at {request.input_location} exceeds the 1 GB limit.")
            return
        except (ObjectNotFound, OSError) as exc:
            self._fail(request, f"Failed to download the input from {request.input_location}: {exc}".encode(),
                       f"ClientError: Failed to download the input payload from {request.input_location}.")
            return
        try:
            response = instance.invoke(conn, body, length, content_type=content_type, accept=request.accept,
                                       custom_attributes=request.custom_attributes,
                                       timeout=request.invocation_timeout_seconds)
        except InvocationTimedOut:
            self._fail(request, b"Model did not respond within InvocationTimeoutSeconds (%d s)"
                       % request.invocation_timeout_seconds,
                       f"ClientError: Request timed out after InvocationTimeoutSeconds "
                       f"({request.invocation_timeout_seconds}s).")
            return
        if response.status != 200:
            first = response.body.decode("utf-8", "replace").strip().splitlines()[:1]
            self._fail(request, response.body,
                       f"ClientError: Received server error ({response.status}) from primary with "
                       f"message \"{first[0] if first else ''}\".", response.content_type)
        elif self.writer.succeed(self.settings, request, response.body, response.content_type):
            self.counters.processed += 1
            self._forget(request)
        else:
            self._fail(request, b"Could not write the output to S3OutputPath",
                       "ClientError: Could not write the output to S3OutputPath.")

    def _fail(self, request: AsyncRequest, body: bytes, reason: str, content_type: str | None = None) -> None:
        self.counters.failed += 1
        self.writer.fail(self.settings, request, body, reason, content_type)
        self._forget(request)

    @staticmethod
    def _forget(request: AsyncRequest) -> None:
        """Its outcome is written: it no longer needs to survive a restart."""
        if request.saved_as is not None:
            request.saved_as.unlink(missing_ok=True)
