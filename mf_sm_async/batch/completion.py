"""Learning that parts finished: the endpoint's SNS notifications through a queue of the run's own, with
a ListObjectsV2 of the run's output and failure prefixes as the fallback (a lost notification, an
endpoint without notifications). Never one HeadObject poll per object.

The queue (``mfsa-run-<tag>``) is subscribed to the endpoint's success and error topics for the length
of the run, so parallel runs on one endpoint each get every notification and keep only their own. A run
that is killed outright cannot delete it: a resumed run (same id, same queue) re-uses it, notifications
kept and all, and deletes it at its end; otherwise :func:`sweep_orphaned_queues` removes it once the
run's lease has expired (``mf-sm-async cleanup``, and the next run on the same endpoint).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from ..lease import Lease
from .run import QUEUE_PREFIX, RunPaths, is_busy, list_keys, split_s3

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    part_key: str
    ok: bool
    location: str | None              # the output (ok) or failure object
    content_type: str | None = None
    body: bytes | None = None         # the output itself when the notification carried it
    reason: str | None = None         # why it failed
    source: str = "notification"      # or "listing"
    event_time: float | None = None   # when the endpoint published it (epoch seconds)

    def latency(self) -> float | None:
        """Seconds from the endpoint's notification to now (the engine calls it with the result in hand)."""
        return None if self.event_time is None else max(0.0, time.time() - self.event_time)


def sqs_policy(queue_arn: str, topics: list[str]) -> str:
    """The queue policy without which SNS silently drops every message on AWS."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topics}}}]})


ENDPOINT_TAG = "mf-sm-async:endpoint"  # leads a run's queue back to the endpoint, where the run's lease is


def run_lease(s3, bucket: str, endpoint_prefix: str, paths: RunPaths) -> Lease:
    """The run's own lease among the endpoint's holders (``leases/run-<tag>-...``): while the run's process
    lives, teardowns by other holders and the emulator's lease keeper leave the endpoint up, and
    :func:`sweep_orphaned_queues` leaves the run's queue alone."""
    lease = Lease(s3, bucket, endpoint_prefix)
    lease.holder = f"run-{paths.tag}-{lease.holder}"
    return lease


class NotificationQueue:
    """The run's own SQS queue, subscribed to the endpoint's topics; removed by ``close``."""

    def __init__(self, sqs, sns, paths: RunPaths, topics: list[str], endpoint: str | None = None):
        """``endpoint``: the endpoint's name, tagged on the queue so the sweep can find the run's lease."""
        self.sqs, self.sns, self.topics = sqs, sns, topics
        tags = {"mf-sm-async:managed": "true", **({ENDPOINT_TAG: endpoint} if endpoint else {})}
        self.url = sqs.create_queue(QueueName=paths.queue_name, Attributes={"MessageRetentionPeriod": "86400"},
                                    tags=tags)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sqs.set_queue_attributes(QueueUrl=self.url, Attributes={"Policy": sqs_policy(arn, topics)})
        self.subscriptions = [sns.subscribe(TopicArn=t, Protocol="sqs", Endpoint=arn,
                                            ReturnSubscriptionArn=True)["SubscriptionArn"] for t in topics]

    def receive(self, wait_seconds: int) -> tuple[list[dict], list[str]]:
        """Notification bodies and their receipt handles (for :meth:`delete`, once they are handled)."""
        messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=wait_seconds).get("Messages", [])
        bodies = []
        for message in messages:
            try:
                envelope = json.loads(message["Body"])
                bodies.append(json.loads(envelope["Message"]) if "Message" in envelope else envelope)
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a message that is not a SageMaker notification: %.200s", message["Body"])
        return bodies, [m["ReceiptHandle"] for m in messages]

    def delete(self, handles: list[str]) -> None:
        if handles:
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(handles)])

    def close(self) -> None:
        _remove_queue(self.sqs, self.sns, self.url, self.subscriptions)


def _remove_queue(sqs, sns, url: str, subscriptions: list[str]) -> None:
    for arn in subscriptions:
        try:
            sns.unsubscribe(SubscriptionArn=arn)
        except ClientError:
            pass
    try:
        sqs.delete_queue(QueueUrl=url)
    except ClientError:
        pass


def sweep_orphaned_queues(sqs, sns, s3, locate, *, endpoint: str | None = None, topics: tuple[str, ...] = (),
                          keep: str | None = None) -> list[str]:
    """Delete the notification queues (and their subscriptions) of runs that died: the run holds no live
    lease on its endpoint and the queue is older than a lease's time to live. Returns the names removed.

    ``locate(endpoint name)`` gives the endpoint's (bucket, prefix), or None when the endpoint is gone (its
    queues can only be orphans). ``endpoint`` (with its ``topics``) limits the sweep to one endpoint's runs;
    ``keep`` names a queue never removed (the calling run's own). Without ``endpoint``, subscriptions of
    queues that no longer exist are removed too.
    """
    by_queue: dict[str, list[str]] = {}
    pages = ([p for topic in topics for p in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)]
             if endpoint is not None else sns.get_paginator("list_subscriptions").paginate())
    for page in pages:
        for sub in page["Subscriptions"]:
            if sub.get("Protocol") == "sqs" and sub["Endpoint"].rsplit(":", 1)[-1].startswith(QUEUE_PREFIX):
                by_queue.setdefault(sub["Endpoint"], []).append(sub["SubscriptionArn"])
    urls = [u for page in sqs.get_paginator("list_queues").paginate(QueueNamePrefix=QUEUE_PREFIX)
            for u in page.get("QueueUrls", [])]
    removed, now, holders = [], time.time(), {}
    grace = Lease(s3, "", "").ttl_seconds  # a younger queue may belong to a run still starting up
    for url in urls:
        name = url.rsplit("/", 1)[-1]
        if name == keep:
            continue
        try:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "CreatedTimestamp"])
            owner = sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).get(ENDPOINT_TAG)
        except ClientError:
            continue  # deleted meanwhile
        arn, created = attributes["Attributes"]["QueueArn"], float(attributes["Attributes"]["CreatedTimestamp"])
        if (endpoint is not None and owner != endpoint) or now - created < grace:
            continue
        if owner and owner not in holders:
            place = locate(owner)
            holders[owner] = Lease(s3, *place).other_live_holders() if place else []
        run = f"run-{name.removeprefix(QUEUE_PREFIX)}-"
        if any(holder.startswith(run) for holder in holders.get(owner, [])):
            continue  # its run is alive
        log.info("removing the notification queue %s of a run that died", name)
        _remove_queue(sqs, sns, url, by_queue.pop(arn, []))
        removed.append(name)
    live = {u.rsplit("/", 1)[-1] for u in urls}
    for arn, subscriptions in by_queue.items():
        if endpoint is None and arn.rsplit(":", 1)[-1] not in live:  # its queue is gone: delivers nowhere
            for sub in subscriptions:
                try:
                    sns.unsubscribe(SubscriptionArn=sub)
                except ClientError:
                    pass
    return removed


def outcome_of(message: dict, paths: RunPaths) -> Outcome | None:
    """This run's part outcome in a notification, or None (a test message, another run's)."""
    if message.get("eventName") != "InferenceResult":
        return None
    key = paths.part_key(message.get("inferenceId", ""))
    if key is None:
        return None
    response = message.get("responseParameters", {})
    sent = _epoch(message.get("eventTime"))
    if message.get("invocationStatus") == "Completed":
        body = message.get("responseBody")
        content = base64.b64decode(body["content"]) if body and body.get("encoding") == "BASE64" else None
        return Outcome(key, True, response.get("outputLocation"), response.get("contentType"), content,
                       event_time=sent)
    return Outcome(key, False, response.get("failureLocation"), response.get("contentType"),
                   reason=message.get("failureReason") or "failed", event_time=sent)


def _epoch(text: str | None) -> float | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None
    except ValueError:
        return None


class Collector:
    """A background thread that puts an :class:`Outcome` on ``outcomes`` for each finished part of the run.

    ``waiting`` (part key -> when it was invoked) is what the engine still waits for; parts that have
    waited longer than ``list_after`` seconds without a notification are looked for by listing the run's
    prefixes, at most every ``list_every`` seconds (and always, without notifications).
    """

    def __init__(self, s3, paths: RunPaths, notifications: NotificationQueue | None, outcomes: queue.Queue, *,
                 list_after: float = 10.0, list_every: float = 5.0, wait_seconds: int = 1):
        self.s3, self.paths, self.notifications = s3, paths, notifications
        self.list_after, self.list_every, self.wait_seconds = list_after, list_every, wait_seconds
        self.outcomes = outcomes
        self._wake = threading.Event()
        self.waiting: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mf-sm-async-collector", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> "Collector":
        self._thread.start()
        return self

    def expect(self, part_key: str) -> None:
        with self._lock:
            self.waiting[part_key] = time.monotonic()
        self._wake.set()

    def forget(self, part_key: str) -> bool:
        """Stop waiting for a part; False if its outcome came first."""
        with self._lock:
            return self.waiting.pop(part_key, None) is not None

    def stop(self, close: bool = True) -> None:
        """Stop listening and delete the run's queue; ``close=False`` (the target is gone) returns at once
        and leaves the queue to a resumed run or to the sweep."""
        self._stop.set()
        self._wake.set()
        if not close:
            return
        self._thread.join(timeout=self.wait_seconds + 30)
        if self.notifications is not None:
            self.notifications.close()

    def _report(self, outcome: Outcome) -> None:
        with self._lock:
            if self.waiting.pop(outcome.part_key, None) is None:
                return  # reported already (a notification and a listing both found it), or not ours
        self.outcomes.put(outcome)

    def _run(self) -> None:
        last_list = time.monotonic()
        try:
            while not self._stop.is_set():
                if not self.waiting:  # idle: no long poll to sit out when the run ends
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                try:
                    last_list = self._round(last_list)
                except ClientError as error:
                    if not is_busy(error):
                        raise
                    log.info("collecting results: %s; trying again", error)  # a throttling burst
                    self._stop.wait(1.0)
        except BaseException as error:  # surfaced by the engine's loop
            self.error = error
            if not self._stop.is_set():  # else the run has ended already, and says why itself
                log.exception("the completion collector stopped")

    def _round(self, last_list: float) -> float:
        """One long poll of the queue, and a listing when parts are overdue; returns when it last listed."""
        if self.notifications is not None:
            messages, handles = self.notifications.receive(self.wait_seconds)
            for message in messages:
                outcome = outcome_of(message, self.paths)
                if outcome is not None:
                    self._report(outcome)
            self.notifications.delete(handles)  # after reporting: the engine need not wait for it
        else:
            self._stop.wait(min(self.list_every, 1.0))
        now = time.monotonic()
        with self._lock:
            overdue = any(now - t > self.list_after for t in self.waiting.values())
            if self.notifications is None:
                overdue = bool(self.waiting)
        if overdue and now - last_list >= self.list_every:
            last_list = now
            self.list_once()
        return last_list

    def list_once(self) -> None:
        """Report every waiting part whose output or failure object exists (one listing per prefix)."""
        folders = [(self.paths.output_folder, ".out", True), (self.paths.failure_folder, "-error.out", False)]
        for folder_uri, suffix, ok in folders:
            if folder_uri is None:
                continue
            bucket, folder = split_s3(folder_uri)
            for key in list_keys(self.s3, bucket, folder + "/"):
                part = self.paths.part_key(key.rsplit("/", 1)[1].removesuffix(suffix))
                if part is not None and part in self.waiting:
                    self._report(Outcome(part, ok, f"s3://{bucket}/{key}", source="listing",
                                         reason=None if ok else "failed (found by listing)"))
