"""A run's identity and where everything it writes lives, on the endpoint's own S3 paths.

Everything is derived from the run id, so a resumed run (same id) finds what the crashed one wrote:

- inputs:   ``s3://<bucket>/<endpoint prefix>/runs/<run id>/in/<part key><ext>``
- journal:  ``.../runs/<run id>/journal/<n>.json``: the parts about to be invoked, written before they are,
  and ``<n>.sent.json``: which of them the endpoint accepted or refused
- lease:    ``<endpoint prefix>/leases/run-<run tag>-<holder>.json`` (among the endpoint's holders): renewed
  while the run's process lives, so ``cleanup`` can tell a dead run's notification queue from a live one's
- manifest: ``.../runs/<run id>/manifest.json``: the plan (rows, parts, content type) and, at the end, the
  outcome
- outputs:  ``<S3OutputPath>/runs/<run id>/<inference id>.out`` (the request's S3OutputPathExtension), and
  failures under ``<S3FailurePath>/runs/<run id>/``: a run's results never mix with another's
- inference ids: ``<run tag>-<part key>``; the run tag (a hash of the run id) tells this run's notifications
  from another's on the endpoint's shared topics
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass

from botocore.exceptions import ClientError

from ..errors import ConfigError

QUEUE_PREFIX = "mfsa-run-"  # each run's notification queue: mfsa-run-<run tag>
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
        raise ConfigError("run_id", run_id, "1-128 characters of letters, digits, '.', '_' and '-', starting "
                          "with a letter or digit")
    return run_id


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    return bucket, key.rstrip("/")


@dataclass(frozen=True)
class RunPaths:
    run_id: str
    bucket: str
    endpoint_prefix: str     # the endpoint's own prefix in ``bucket`` (inputs, journal, manifest)
    output_path: str         # the endpoint's S3OutputPath
    failure_path: str | None

    @property
    def tag(self) -> str:
        return hashlib.sha256(self.run_id.encode()).hexdigest()[:12]

    @property
    def prefix(self) -> str:
        return f"{self.endpoint_prefix}/runs/{self.run_id}"

    @property
    def extension(self) -> str:
        return f"runs/{self.run_id}"

    def input_key(self, part_key: str, ext: str) -> str:
        return f"{self.prefix}/in/{part_key}{ext}"

    def inference_id(self, part_key: str) -> str:
        return f"{self.tag}-{part_key}"

    def part_key(self, inference_id: str) -> str | None:
        """The part an inference id of this run belongs to; None for another run's."""
        head, _, key = inference_id.partition("-")
        return key if head == self.tag and key else None

    @property
    def output_folder(self) -> str:
        """Where this run's outputs appear (the S3OutputPath plus the run's path extension), with a '/'."""
        return f"{self.output_path.rstrip('/')}/{self.extension}/"

    @property
    def failure_folder(self) -> str | None:
        return f"{self.failure_path.rstrip('/')}/{self.extension}/" if self.failure_path else None

    def output_uri(self, part_key: str) -> str:
        return f"{self.output_folder}{self.inference_id(part_key)}.out"

    def failure_uri(self, part_key: str) -> str | None:
        folder = self.failure_folder
        return f"{folder}{self.inference_id(part_key)}-error.out" if folder else None

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}/manifest.json"

    @property
    def queue_name(self) -> str:
        return f"{QUEUE_PREFIX}{self.tag}"


@dataclass(frozen=True)
class Sent:
    """What the journal knows of one part: the deadline its request carried, and whether the endpoint
    took it (``accepted``), refused it (``refused``: it never ran, send it again) or the attempt died
    before it could say (``unknown``: a crash between the journal write and the answers)."""
    deadline: float
    state: str


class Journal:
    """Which parts were (about to be) invoked, in S3, so a resumed run never invokes one twice.

    InferenceId is no idempotency key on AWS: the same request sent twice runs twice. So each wave of
    invocations is recorded *before* it is sent (``journal/<entry>.json``), and once the endpoint has
    answered, which requests it accepted and which it refused (``journal/<entry>.sent.json``). A resumed
    run waits for accepted parts, sends refused ones again at once, and treats a part without an answer
    (the attempt died mid-wave) as accepted unless the target can tell otherwise.
    """

    def __init__(self, s3, paths: RunPaths):
        self.s3, self.paths = s3, paths

    def record(self, part_keys: list[str], deadline: float) -> str:
        """``deadline``: epoch seconds after which a part with no result can never produce one (its
        TTL has passed and its invocation timeout too). Returns the entry's name, for :meth:`answered`."""
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"  # unique across a run and its resumptions, in order
        body = json.dumps({"parts": part_keys, "deadline": deadline}).encode()
        self.s3.put_object(Bucket=self.paths.bucket, Key=f"{self.paths.prefix}/journal/{name}.json", Body=body)
        return name

    def answered(self, name: str, accepted: list[str], refused: list[str]) -> None:
        """The endpoint's answers to the wave recorded as ``name``."""
        body = json.dumps({"accepted": accepted, "refused": refused}).encode()
        self.s3.put_object(Bucket=self.paths.bucket, Key=f"{self.paths.prefix}/journal/{name}.sent.json", Body=body)

    def invoked(self) -> dict[str, Sent]:
        """part key -> what its latest invocation in every earlier attempt of this run came to."""
        docs = {}
        for key in list_keys(self.s3, self.paths.bucket, f"{self.paths.prefix}/journal/"):
            docs[key.rsplit("/", 1)[1]] = json.loads(self.s3.get_object(Bucket=self.paths.bucket, Key=key)["Body"].read())
        found: dict[str, Sent] = {}
        for name in sorted(n for n in docs if not n.endswith(".sent.json")):  # oldest first: the latest wins
            entry, answers = docs[name], docs.get(name.removesuffix(".json") + ".sent.json") or {}
            accepted, refused = set(answers.get("accepted", ())), set(answers.get("refused", ()))
            for part in entry["parts"]:
                state = "accepted" if part in accepted else "refused" if part in refused else "unknown"
                found[part] = Sent(entry["deadline"], state)
        return found


# Refusals that say "later", not "no": throttling, S3 SlowDown, a server error. Never the rows' fault.
BUSY_CODES = {"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
              "RequestLimitExceeded", "SlowDown", "ServiceUnavailable", "InternalFailure", "InternalServerError",
              "InternalError", "RequestThrottled"}
BUSY_RETRIES = 8


def is_busy(error: BaseException) -> bool:
    if not isinstance(error, ClientError):
        return False
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return error.response.get("Error", {}).get("Code") in BUSY_CODES or status >= 500


def busy_delay(attempt: int) -> float:
    """Seconds to wait before the ``attempt``-th (1, 2, ...) try after botocore's own retries gave up."""
    return min(30.0, 0.5 * 2 ** attempt)


def patient(call, *args, **kwargs):
    """``call(*args, **kwargs)``, tried again (up to BUSY_RETRIES times, backing off) when it fails as busy
    after botocore's own retries: in a long unattended run a burst of S3 SlowDowns is worth waiting out,
    not worth ending the run for."""
    for attempt in range(1, BUSY_RETRIES + 1):
        try:
            return call(*args, **kwargs)
        except ClientError as error:
            if not is_busy(error):
                raise
            time.sleep(busy_delay(attempt))
    return call(*args, **kwargs)


def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def read_json(s3, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as error:
        if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


def write_json(s3, bucket: str, key: str, doc: dict) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc, indent=1).encode(), ContentType="application/json")
