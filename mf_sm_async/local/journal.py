"""Persistence: a daemon restarted on the same state directory has lost nothing.

- Objects already live on disk (:mod:`.objects`).
- Control-plane state (models, endpoint configs, endpoints, topics, queues, subscriptions, scalable
  targets, policies, alarms) is moto's, in memory: every successful mutating call is appended to
  ``journal.jsonl`` and replayed through the same WSGI app at start-up. The Authorization header is
  stored reduced to its credential scope (region and service, which moto routes by): no access key, no
  signature is written.
- Accepted asynchronous requests are written to ``requests/`` before the 202 answer and removed when
  their outcome is written, so a request queued or in flight when the daemon died runs after the restart
  (at least once, as AWS promises no more).
- SQS messages (notifications not yet consumed) are saved at a clean stop and sent again at start.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
import urllib.parse
from pathlib import Path

from moto.sqs.models import sqs_backends

from .wire import credential_scope

log = logging.getLogger(__name__)

_MUTATING = re.compile(r"^(Create|Delete|Put|Update|Register|Deregister|Subscribe|Unsubscribe|Set|Add|Remove|"
                       r"Tag|Untag|Enable|Disable|Confirm)")
_NOT_STATE = {"PutMetricData", "SetAlarmState", "DeleteMessage", "DeleteMessageBatch"}
# never written to disk: the signature and a session token are credentials, the rest is noise
_SECRET_HEADERS = {"HTTP_AUTHORIZATION", "HTTP_X_AMZ_SECURITY_TOKEN", "HTTP_USER_AGENT", "HTTP_AMZ_SDK_INVOCATION_ID",
                   "HTTP_AMZ_SDK_REQUEST", "HTTP_X_AMZ_DATE", "HTTP_HOST"}


def operation(environ: dict, body: bytes) -> str | None:
    """The AWS operation of a JSON (X-Amz-Target) or query (Action=) protocol request."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    if "/operation/" in environ.get("PATH_INFO", ""):  # smithy rpc-v2-cbor (CloudWatch in new botocore)
        return environ["PATH_INFO"].rsplit("/", 1)[-1]
    if environ.get("REQUEST_METHOD") == "POST" and body[:1000].find(b"Action=") >= 0:
        return urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", [None])[0]
    return urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("Action", [None])[0]


def is_state_change(op: str | None) -> bool:
    return bool(op) and op not in _NOT_STATE and bool(_MUTATING.match(op))


class Journal:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "journal.jsonl"
        self._lock = threading.Lock()

    def record(self, environ: dict, body: bytes) -> None:
        scope = credential_scope(environ)
        headers = {k: v for k, v in environ.items() if k.startswith("HTTP_") and k not in _SECRET_HEADERS}
        entry = {
            "method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO", "/"),
            "query": environ.get("QUERY_STRING", ""), "content_type": environ.get("CONTENT_TYPE", ""),
            "headers": headers, "scope": str(scope) if scope else None,
            "body": base64.b64encode(body).decode(),
        }
        with self._lock, open(self.path, "a") as out:
            out.write(json.dumps(entry) + "\n")

    def replay(self, app) -> int:
        """Send every recorded call through ``app`` again, in order; the number replayed."""
        if not self.path.exists():
            return 0
        count = 0
        for entry in _without_deleted_endpoints([json.loads(line) for line in self.path.read_text().splitlines()]):
            body = base64.b64decode(entry["body"])
            environ = {
                "REQUEST_METHOD": entry["method"], "PATH_INFO": entry["path"], "QUERY_STRING": entry["query"],
                "CONTENT_TYPE": entry["content_type"], "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "0", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1",
                "wsgi.errors": io.StringIO(), "mf_sm_async.replay": True, **entry["headers"],
            }
            if entry["scope"]:
                environ["HTTP_AUTHORIZATION"] = (f"AWS4-HMAC-SHA256 Credential=replay/{entry['scope']}/aws4_request, "
                                                 "SignedHeaders=host, Signature=replay")
            status = []
            b"".join(app(environ, lambda s, h, e=None: status.append(s) or (lambda data: None)))
            if not status or not status[0].startswith("2"):
                log.warning("replaying %s %s answered %s", entry["headers"].get("HTTP_X_AMZ_TARGET") or entry["path"],
                            entry["query"], status)
            count += 1
        return count


def _without_deleted_endpoints(entries: list[dict]) -> list[dict]:
    """Skip the calls on an endpoint from its CreateEndpoint to its DeleteEndpoint, so a restart does not
    start (and stop again) the model servers of every endpoint that was ever deleted."""
    def endpoint_call(entry):
        op = (entry["headers"].get("HTTP_X_AMZ_TARGET") or "").split(".")[-1]
        if entry["headers"].get("HTTP_X_AMZ_TARGET", "").startswith("SageMaker.") and op in (
                "CreateEndpoint", "UpdateEndpoint", "UpdateEndpointWeightsAndCapacities", "DeleteEndpoint"):
            return op, json.loads(base64.b64decode(entry["body"]) or b"{}").get("EndpointName")
        return None, None

    skip, open_span = set(), {}
    for index, entry in enumerate(entries):
        op, name = endpoint_call(entry)
        if op == "CreateEndpoint":
            open_span[name] = [index]
        elif op and name in open_span:
            open_span[name].append(index)
            if op == "DeleteEndpoint":
                skip.update(open_span.pop(name))
    return [entry for index, entry in enumerate(entries) if index not in skip]


class RequestLog:
    """One file per accepted asynchronous request, removed once its outcome is written."""

    def __init__(self, state_dir: Path):
        self.root = Path(state_dir) / "requests"
        self._seq = 0
        self._lock = threading.Lock()

    def save(self, region: str, request) -> Path:
        with self._lock:
            self._seq += 1
            seq = self._seq
        folder = self.root / region / request.endpoint_name
        folder.mkdir(parents=True, exist_ok=True)
        record = {k: v for k, v in vars(request).items() if k not in ("inline_body", "saved_as", "extra")}
        if request.inline_body is not None:
            record["inline_body"] = base64.b64encode(request.inline_body).decode()
        path = folder / f"{seq:012d}.json"
        path.write_text(json.dumps(record))
        return path

    def pending(self) -> list[tuple[str, dict]]:
        """(region, record) of every request not finished, oldest first per endpoint."""
        found = []
        for path in sorted(self.root.glob("*/*/*.json")):
            record = json.loads(path.read_text())
            if record.get("inline_body") is not None:
                record["inline_body"] = base64.b64decode(record["inline_body"])
            path.unlink()  # submitting it again writes it again
            found.append((path.parent.parent.name, record))
        return found


def save_sqs_messages(state_dir: Path, account_id: str) -> int:
    """Every message still in a queue (visible or in flight), to be sent again after a restart."""
    saved = []
    for region, backend in sqs_backends[account_id].items():
        for queue in backend.queues.values():
            for message in list(queue._messages):
                saved.append({"region": region, "queue": queue.name, "body": message.body})
    (Path(state_dir) / "sqs-messages.json").write_text(json.dumps(saved))
    return len(saved)


def restore_sqs_messages(state_dir: Path, account_id: str) -> int:
    path = Path(state_dir) / "sqs-messages.json"
    if not path.exists():
        return 0
    saved = json.loads(path.read_text())
    for message in saved:
        try:
            sqs_backends[account_id][message["region"]].send_message(message["queue"], message["body"])
        except Exception as exc:  # the queue was deleted before the stop
            log.warning("message for %s not restored: %s", message["queue"], exc)
    path.unlink()
    return len(saved)
