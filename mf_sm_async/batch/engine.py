"""The fan-out engine: a DataFrame's payloads through an asynchronous endpoint and back, aligned.

One loop, in the caller's thread, keeps at most ``max_in_flight`` payloads between staging and a decoded
result. Staging (encode + upload) and fetching (download + decode) run on thread pools; invocations
are sent by the loop in waves, each wave written to the run's journal first (see :mod:`.run`), so a
resumed run never sends a part twice; completion comes from :mod:`.completion`. A payload that fails is
split in two and the halves retried, down to single rows, so one poison row costs one row.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import queue
import statistics
import threading
import time

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from .. import aws
from ..errors import AsyncInferenceError, ConfigError, InvocationError, TargetError
from .codecs import OutputShapeError
from .completion import Collector, NotificationQueue, Outcome, run_lease, sweep_orphaned_queues
from .endpoint_io import EndpointIO
from .payloads import Staged, payloads_for
from ..progress import Progress, sink_for
from .result import FAILURE_COLUMNS, BatchResult, RunMetrics
from .run import (BUSY_RETRIES, Journal, RunPaths, busy_delay, check_run_id, is_busy, list_keys, new_run_id, patient,
                  read_json, split_s3, write_json)
from .watcher import InstanceWatcher

log = logging.getLogger(__name__)


def predict(endpoint, frame: pd.DataFrame, spec) -> BatchResult:
    io = EndpointIO.of(endpoint)
    if spec.resume and not spec.run_id:
        raise ConfigError("run_id", None, "the id of the run to resume (resume=True needs run_id=)")
    run_id = check_run_id(spec.run_id) if spec.run_id else new_run_id()
    paths = RunPaths(run_id, io.bucket, io.prefix, io.output_path, io.failure_path)
    return _Run(endpoint, io, paths, frame, spec).run()


class _Run:
    def __init__(self, endpoint, io: EndpointIO, paths: RunPaths, frame: pd.DataFrame, spec):
        self.ep, self.io, self.paths, self.frame, self.spec = endpoint, io, paths, frame, spec
        self.payloads = payloads_for(frame, spec)
        client = endpoint._client
        self.s3, self.runtime = client("s3"), client("sagemaker-runtime")
        self.journal = Journal(self.s3, paths)
        self.results: dict[int, pd.DataFrame] = {}          # part start -> decoded rows
        self.failed: list[tuple[object, Outcome, str]] = []  # (part, outcome, error text)
        self.resumed: dict[str, object] = {}                 # parts an earlier attempt sent: key -> part
        self.deadlines: dict[str, float] = {}                # ... and when their requests expire for sure
        self._deadline_check = self._target_check = 0.0
        self._busy: dict[str, int] = {}                      # part key -> sends refused as throttled
        self._later: list[tuple[float, object]] = []         # (when, part): refused sends to try again
        self.payloads_sent = self.reused = self.bytes_sent = self.retries = 0
        self._lock = threading.Lock()
        self.events: queue.Queue = queue.Queue()
        self._latencies: list[float] = []  # notification sent -> result decoded, per part

    # the loop ------------------------------------------------------------------------------------
    def run(self) -> BatchResult:
        """The run, with every AWS-level error that ends it turned into an AsyncInferenceError that says
        how to resume (the raw botocore error is in its text)."""
        try:
            return self._run()
        except (BotoCoreError, ClientError) as error:
            raise self._stopped(error) from None

    def _stopped(self, error: BaseException | None) -> Exception:
        """The error that ends the run: says what happened and how to resume it."""
        hint = (f"finish the run with ep.predict(frame, run_id={self.paths.run_id!r}, resume=True) and the same "
                "frame and options: parts already sent are not sent again")
        lost = aws.lost(self.io.target, self.io.url)
        if lost:
            return TargetError(f"run {self.paths.run_id} stopped: {lost}",
                               "start the emulator again (`mf-sm-async local start`, same MF_SM_ASYNC_HOME), then "
                               + hint)
        if isinstance(error, AsyncInferenceError):
            return error
        if isinstance(error, BotoCoreError):
            return TargetError(f"run {self.paths.run_id} stopped: {error}", hint)
        code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
        return InvocationError(f"run {self.paths.run_id} stopped: {code or type(error).__name__}: {error}", hint)

    def _check_target(self) -> None:
        """On the local target, notice within a second that the emulator went away (a `local stop`, a
        crash), instead of after botocore's retries, and stop with an error that says so."""
        now = time.monotonic()
        if self.io.target != "local" or now - self._target_check < 1.0:
            return
        self._target_check = now
        if aws.lost(self.io.target, self.io.url):
            raise self._stopped(None)

    def _run(self) -> BatchResult:
        started = time.monotonic()
        parts = self.payloads.parts
        progress = Progress(sink_for(self.spec.progress), rows=len(self.frame), payloads=len(parts))
        self._write_plan(len(parts))
        lease = run_lease(self.s3, self.io.bucket, self.io.prefix, self.paths).acquire()  # before its queue
        watcher = collector = None
        pools = (cf.ThreadPoolExecutor(self.spec.upload_threads, thread_name_prefix="mf-sm-async-stage"),
                 cf.ThreadPoolExecutor(16, thread_name_prefix="mf-sm-async-invoke"),
                 cf.ThreadPoolExecutor(self.spec.download_threads, thread_name_prefix="mf-sm-async-fetch"))
        reachable = True
        try:
            watcher = InstanceWatcher(self.ep).start()
            # the emulator notifies at once; on AWS a notification can lag by seconds before we list for it
            list_after = 3.0 if self.io.target == "local" else 10.0
            collector = Collector(self.s3, self.paths, self._notification_queue(), self.events,
                                  list_after=list_after).start()
            self._sweep_orphans()
            pending = collections.deque(self._resume(parts, collector, progress) if self.spec.resume else parts)
            if pending or collector.waiting:
                watcher.wake()
            self._loop(pending, collector, pools, progress, watcher)
        except BaseException:
            # With the target gone every call would sit out botocore's retries: leave the queue and the
            # lease (the resumed run re-uses the one, the other expires) and stop at once.
            reachable = not aws.lost(self.io.target, self.io.url)
            raise
        finally:
            for pool in pools:
                pool.shutdown(wait=reachable, cancel_futures=True)
            if collector is not None:
                collector.stop(close=reachable)
            if watcher is not None:
                watcher.stop(look=reachable)
            lease.release() if reachable else lease.abandon()
        seconds = time.monotonic() - started
        result = self._assemble(RunMetrics(
            run_id=self.paths.run_id, rows=len(self.frame), rows_failed=0, payloads=self.payloads_sent,
            payloads_reused=self.reused, bytes_sent=self.bytes_sent, seconds=seconds, retries=self.retries,
            max_instances_seen=watcher.max_instances, instance_seconds=watcher.instance_seconds,
            median_latency_seconds=_median([t for t in self._latencies if t is not None])))
        progress.update(rows_failed=result.metrics.rows_failed, rows_done=len(self.frame) - result.metrics.rows_failed,
                        in_flight=0, backlog=0)
        progress.finish()
        self._finish(result)
        return result

    def _sweep_orphans(self) -> None:
        """Queues of this endpoint's runs that were killed outright and never resumed: remove them, or
        every notification of the endpoint keeps being copied into them."""
        try:
            removed = sweep_orphaned_queues(self.ep._client("sqs"), self.ep._client("sns"), self.s3,
                                            lambda name: (self.io.bucket, self.io.prefix),
                                            endpoint=self.io.name, topics=self.io.topics, keep=self.paths.queue_name)
        except (BotoCoreError, ClientError) as error:  # housekeeping: never worth failing the run for
            log.warning("could not look for orphaned run queues: %s", error)
            return
        if removed:
            log.info("removed %d notification queue(s) of dead runs on %s", len(removed), self.io.name)

    def _loop(self, pending, collector, pools, progress, watcher) -> None:
        """Everything the helpers finish comes back on ``self.events``: staged payloads, outcomes (from the
        collector) and fetched results; the loop reacts to each as it comes."""
        stage_pool, invoke_pool, fetch_pool = pools
        outstanding = len(self.resumed)               # from staging until its outcome is handled
        parts: dict[str, object] = {p.key: p for p in self.payloads.parts}
        parts.update(self.resumed)

        def put_back(kind, *items):
            return lambda future: self.events.put((kind, *items, future))

        while pending or outstanding or self._later:
            self._check_target()
            if collector.error is not None:
                raise self._stopped(collector.error) from collector.error
            for key in self._never_ran(collector):
                log.info("part %s was recorded as sent but has no result past its deadline: sending it", key)
                pending.appendleft(self.resumed.pop(key))
                outstanding -= 1
            now = time.monotonic()
            while self._later and self._later[0][0] <= now:
                pending.appendleft(self._later.pop(0)[1])
            while pending and outstanding < self.spec.max_in_flight:
                part = pending.popleft()
                parts[part.key] = part
                stage_pool.submit(patient, self.payloads.stage, self.s3, self.paths, part).add_done_callback(put_back("staged"))
                outstanding += 1
            events = []
            try:
                events.append(self.events.get(timeout=0.5))
                while True:
                    events.append(self.events.get_nowait())
            except queue.Empty:
                pass
            # a staging error (unreadable file, S3 refused) ends the run
            wave = [e[1].result() for e in events if isinstance(e, tuple) and e[0] == "staged"]
            if wave:
                outstanding -= self._send_wave(wave, collector, invoke_pool, progress)
            for event in events:
                if isinstance(event, Outcome):
                    fetch_pool.submit(self._fetch, event, parts[event.part_key]).add_done_callback(
                        put_back("fetched", event))
                elif event[0] == "fetched":
                    outcome, (frame, error) = event[1], event[2].result()
                    part = parts[outcome.part_key]
                    outstanding -= 1
                    if frame is not None:
                        self.results[part.start] = frame
                        self._latencies.append(outcome.latency())
                        progress.add(done=1, rows_done=part.rows)
                    elif (self.payloads.splittable and part.rows > 1 and self.spec.on_error == "collect"
                          and not _expired(error)):
                        halves = self.payloads.split(part)
                        log.info("payload %s (%d rows) failed: retrying it in %d pieces", part.key, part.rows,
                                 len(halves))
                        # pieces an earlier attempt of this run sent come through the collector, not again
                        pending.extendleft(reversed([h for h in halves if h.key not in self.resumed]))
                        progress.add(payloads=len(halves) - 1)  # the pieces replace the part in the count
                    else:
                        self._failed(part, outcome, error, progress)
            progress.update(in_flight=len(collector.waiting), backlog=len(collector.waiting),
                            instances=watcher.instances)

    def _send_wave(self, wave: list[Staged], collector: Collector, invoke_pool, progress: Progress) -> int:
        """Record the wave, send it, record the endpoint's answers; returns how many of its parts are no
        longer outstanding (refused: failed, or due again later)."""
        # Recorded, then sent, before anything else runs here (a progress callback included): the window
        # in which a crash leaves parts recorded but perhaps not sent stays as short as the sends.
        entry = self._record_wave(wave, collector)
        sends = [invoke_pool.submit(self._invoke, staged) for staged in wave]
        while cf.wait(sends, timeout=1.0).not_done:
            self._check_target()
        accepted, refused, unanswered, settled = [], [], None, 0
        for staged, send in zip(wave, sends):
            part, error = staged.part, send.exception()
            if error is None:
                accepted.append(part.key)
            elif not isinstance(error, ClientError):
                unanswered = unanswered or error  # the request may or may not have arrived: resume sorts it out
            elif collector.forget(part.key):
                refused.append(part.key)
                settled += 1
                tries = self._busy[part.key] = self._busy.get(part.key, 0) + 1
                if is_busy(error) and tries <= BUSY_RETRIES:  # never queued: in a later wave
                    self.retries += 1
                    self._later.append((time.monotonic() + busy_delay(tries), part))
                    self._later.sort(key=lambda item: item[0])
                else:  # not sent: a failure of its rows, with the reason
                    self._failed(part, Outcome(part.key, False, None), f"not sent: {error}", progress)
        if unanswered is not None:
            if not aws.lost(self.io.target, self.io.url):
                try:  # what is known is worth keeping for the resumed run
                    patient(self.journal.answered, entry, accepted, refused)
                except (BotoCoreError, ClientError):
                    pass
            raise unanswered
        patient(self.journal.answered, entry, accepted, refused)
        progress.add(uploaded=len(accepted))
        return settled

    def _failed(self, part, outcome: Outcome, error: str, progress: Progress) -> None:
        self.failed.append((part, outcome, error))
        progress.add(failed=1, rows_failed=part.rows)
        if self.spec.on_error == "raise":
            raise InvocationError(f"payload {self.paths.inference_id(part.key)} failed: {error}")

    def _record_wave(self, wave: list[Staged], collector: Collector) -> str:
        deadline = time.time() + self.spec.request_ttl_seconds + self.spec.invocation_timeout_seconds + 60
        entry = patient(self.journal.record, [s.part.key for s in wave], deadline)  # before sending: see Journal
        for staged in wave:
            collector.expect(staged.part.key)
        return entry

    def _invoke(self, staged: Staged) -> None:
        spec = self.spec
        request = {"EndpointName": self.io.name, "InferenceId": self.paths.inference_id(staged.part.key),
                   "S3OutputPathExtension": self.paths.extension, "RequestTTLSeconds": spec.request_ttl_seconds,
                   "InvocationTimeoutSeconds": spec.invocation_timeout_seconds}
        for name, value in (("ContentType", self.payloads.content_type), ("Accept", self.payloads.accept),
                            ("CustomAttributes", spec.attributes)):
            if value:
                request[name] = value
        answer = self.runtime.invoke_endpoint_async(**request, **staged.request_fields())
        with self._lock:
            self.payloads_sent += 1
            self.bytes_sent += staged.size
            self.retries += answer["ResponseMetadata"].get("RetryAttempts", 0)

    def _fetch(self, outcome: Outcome, part) -> tuple[pd.DataFrame | None, str | None]:
        """The decoded rows of a finished part, or (None, error text)."""
        if not outcome.ok:
            return None, self._failure_text(outcome)
        body, content_type = outcome.body, outcome.content_type
        try:
            if body is None:
                bucket, key = split_s3(outcome.location or self.paths.output_uri(part.key))
                answer = patient(self.s3.get_object, Bucket=bucket, Key=key)
                content_type = content_type or answer.get("ContentType")
                limit = self.payloads.fetch_limit
                if limit is not None and answer["ContentLength"] > limit:
                    answer["Body"].close()
                    return self.payloads.decode(None, content_type, part, f"s3://{bucket}/{key}"), None
                body = answer["Body"].read()
            return self.payloads.decode(body, content_type, part), None
        except OutputShapeError as error:
            return None, str(error)
        except (ValueError, UnicodeDecodeError) as error:
            return None, f"the output could not be decoded as {content_type}: {error}"

    def _failure_text(self, outcome: Outcome) -> str:
        location = outcome.location or self.paths.failure_uri(outcome.part_key)
        if not location:
            return outcome.reason or "failed"
        try:
            bucket, key = split_s3(location)
            text = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read(4096).decode("utf-8", "replace")
        except (ClientError, BotoCoreError):
            return outcome.reason or "failed"
        return f"{outcome.reason}: {text}" if outcome.reason and outcome.reason not in text else text

    # resume, plan and finish --------------------------------------------------------------------
    def _notification_queue(self) -> NotificationQueue | None:
        if not self.io.topics:
            return None
        return NotificationQueue(self.ep._client("sqs"), self.ep._client("sns"), self.paths, list(self.io.topics),
                                 self.io.name)

    def _plan_doc(self, parts: int) -> dict:
        return {"run_id": self.paths.run_id, "endpoint": self.io.name, "rows": len(self.frame), "parts": parts,
                "content_type": self.payloads.content_type, "payload_column": self.spec.payload_column,
                "rows_per_payload": self.spec.rows_per_payload, "max_payload_bytes": self.spec.max_payload_bytes}

    def _write_plan(self, parts: int) -> None:
        plan = self._plan_doc(parts)
        earlier = patient(read_json, self.s3, self.paths.bucket, self.paths.manifest_key)
        if earlier is not None:
            if {k: earlier.get(k) for k in plan} != plan:
                raise ConfigError("run_id", self.paths.run_id, "a new run id, or the same input and options as "
                                  f"the run it names (that run planned {earlier.get('rows')} rows in "
                                  f"{earlier.get('parts')} parts with {earlier.get('content_type')})")
            if not self.spec.resume:
                raise ConfigError("run_id", self.paths.run_id, "a run id not used before, or resume=True",
                                  hint="resume=True re-uses the finished parts of that run")
        patient(write_json, self.s3, self.paths.bucket, self.paths.manifest_key, {**plan, "finished": False})

    def _resume(self, parts, collector: Collector, progress: Progress) -> list:
        """Parts still to send. Parts an earlier attempt sent are waited for, never sent again: their
        outcomes (already in S3, or still to come) arrive through the collector. A part the endpoint
        refused is sent again; one whose answer the crash cut off counts as sent unless the target can
        tell it never arrived (the emulator can; AWS cannot, so it is sent again only past its deadline)."""
        invoked = patient(self.journal.invoked)
        now, top = time.time(), {p.key: p for p in parts}
        finished = self._finished_keys()
        unknown = [k for k, sent in invoked.items() if sent.state == "unknown" and k not in finished]
        arrived = self.io.received([self.paths.inference_id(k) for k in unknown]) if unknown else None
        for key, sent in invoked.items():
            part = _part_for_key(key, top, self.payloads.split)
            if part is None or (key not in finished and (
                    sent.state == "refused" or sent.deadline <= now
                    or (arrived is not None and sent.state == "unknown"
                        and self.paths.inference_id(key) not in arrived))):
                continue  # never queued, or can produce nothing any more: (its part is) sent again
            collector.expect(key)
            self.resumed[key] = part
            self.deadlines[key] = sent.deadline
            self.reused += key in top
        to_send = [part for part in parts if part.key not in collector.waiting]
        collector.list_once()
        progress.add(uploaded=self.reused)
        return to_send

    def _never_ran(self, collector: Collector) -> list[str]:
        """Resumed parts still without an outcome after the deadline their requests carried (a crash
        between the journal and the request): nothing can come for them any more."""
        now = time.time()
        if not self.deadlines or now - self._deadline_check < 1.0:
            return []
        self._deadline_check = now
        late = [k for k, d in self.deadlines.items() if d < now and k in collector.waiting and collector.forget(k)]
        for key in late:
            del self.deadlines[key]
        return late

    def _finished_keys(self) -> set[str]:
        """Parts of this run whose output or failure object exists (one listing per folder)."""
        found = set()
        for folder_uri, suffix in ((self.paths.output_folder, ".out"), (self.paths.failure_folder, "-error.out")):
            if folder_uri:
                bucket, folder = split_s3(folder_uri)
                for key in patient(list_keys, self.s3, bucket, folder + "/"):
                    part = self.paths.part_key(key.rsplit("/", 1)[1].removesuffix(suffix))
                    if part is not None:
                        found.add(part)
        return found

    def _assemble(self, metrics: RunMetrics) -> BatchResult:
        n = len(self.frame)
        pieces = []
        for start in sorted(self.results):
            piece = self.results[start]
            pieces.append(piece.set_axis(pd.RangeIndex(start, start + len(piece))))
        # with no part answered (every row failed) the one column a 1-D answer has: the result's shape
        # should not depend on how many rows failed
        predictions = (pd.concat(pieces) if pieces else pd.DataFrame({"prediction": pd.Series(dtype=float)}))
        predictions = predictions.reindex(pd.RangeIndex(n))
        predictions.index = self.frame.index
        failure_rows, positions = [], []
        for part, outcome, error in sorted(self.failed, key=lambda f: f[0].start):
            location = outcome.location or self.paths.failure_uri(part.key)
            for position in range(part.start, part.stop):
                positions.append(position)
                failure_rows.append((self.paths.inference_id(part.key), error, location))
        failures = pd.DataFrame(failure_rows, columns=FAILURE_COLUMNS)
        failures.index = self.frame.index[positions] if positions else self.frame.index[:0]
        metrics = RunMetrics(**{**metrics.__dict__, "rows_failed": len(positions)})
        return BatchResult(predictions, failures, metrics)

    def _finish(self, result: BatchResult) -> None:
        patient(write_json, self.s3, self.paths.bucket, self.paths.manifest_key, {
            **self._plan_doc(len(self.payloads.parts)), "finished": True,
            "metrics": result.metrics.as_dict()})
        if not self.spec.keep_inputs:
            keys = patient(list_keys, self.s3, self.paths.bucket, f"{self.paths.prefix}/in/")
            for start in range(0, len(keys), 1000):
                patient(self.s3.delete_objects, Bucket=self.paths.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})


def _part_for_key(key: str, top: dict, split) -> object | None:
    """The part a journal key names: a planned part, or a piece of one split (``<part>.<0|1>...``)."""
    head, *path = key.split(".")
    part = top.get(head)
    for step in path:
        if part is None:
            return None
        pieces = {p.key: p for p in split(part)}
        part = pieces.get(f"{part.key}.{step}")
    return part


def _expired(error: str | None) -> bool:
    """A part that expired unprocessed (no capacity within its RequestTTLSeconds) is no fault of its rows:
    halves would only wait (and expire) again, so it is not split."""
    text = (error or "").lower()
    return "expired" in text and "ttl" in text


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
