"""Every configuration field of an async endpoint, validated once, here.

Deep code (the endpoint, the emulator) trusts an :class:`EndpointSpec`: each invalid value raises
:class:`~mf_sm_async.errors.ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError

TEARDOWN_MODES = ("zero", "delete", "keep")
TARGETS = ("local", "aws")
ROLE_ENV = "MF_SM_ASYNC_ROLE_ARN"
# The emulator never assumes the role, but CreateModel requires one that looks real.
LOCAL_ROLE_ARN = "arn:aws:iam::123456789012:role/mf-sm-async-local"
RESERVED_TAG_PREFIXES = ("aws:", "mf-sm-async:")  # AWS's own, and the tags we set to find our resources

_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9]+(-[a-z0-9]+)?\.[a-z0-9]+")
# re.ASCII: without it \d and \w also match non-ASCII digits and letters that IAM rejects.
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", re.ASCII)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")

_ROLE_ALLOWED = "an IAM role ARN like 'arn:aws:iam::123456789012:role/name'"
_BUCKET_ALLOWED = ("'s3://bucket[/prefix]' with a bucket name of 3 to 63 lowercase letters, digits, dots "
                   "and hyphens, starting and ending with a letter or digit, no '..', not an IP address")
_TAGS_ALLOWED = "a dict or an iterable of (key, value) string pairs"
_TAG_KEY_ALLOWED = "tag keys of 1 to 128 characters, not starting with 'aws:' or 'mf-sm-async:'"
# What S3's SSEKMSKeyId and SageMaker's OutputConfig.KmsKeyId both take: a key id (or multi-region key id),
# a key ARN, an alias name or an alias ARN.
_KMS_KEY = re.compile(r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
                      r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]{1,128}|alias/[A-Za-z0-9/_-]{1,250})"
                      r"|alias/[A-Za-z0-9/_-]{1,250}", re.ASCII)
_KMS_ALLOWED = ("None, a KMS key id ('1234abcd-12ab-34cd-56ef-1234567890ab' or 'mrk-...'), a key ARN "
                "('arn:aws:kms:<region>:<account>:key/<id>'), an alias ('alias/name') or an alias ARN")
# A MIME type as the InvokeEndpointAsync headers carry it: visible ASCII, at most 1024 characters.
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;[\x20-\x7e]*)?", re.ASCII)


def _media_type(field: str, value: object, allowed: str) -> None:
    """A MIME type as the InvokeEndpointAsync headers carry it, or a ConfigError with ``allowed``."""
    if not (isinstance(value, str) and len(value) <= 1024 and _MEDIA_TYPE.fullmatch(value)):
        raise ConfigError(field, value, allowed)


def _integer(field: str, value: object, low: int, high: int, high_text: str | None = None) -> int:
    # Integral admits numpy integers; bool is an int subclass, but min_instances=True is a mistake.
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(field, value, f"an integer from {low} to {high_text or high}")
    return int(value)


def _number(field: str, value: object, above: float, high: float) -> float:
    # Written so that NaN fails the range test too.
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not above < value <= high:
        raise ConfigError(field, value, f"a number greater than {above} and at most {high}")
    return float(value)


def _from_kwargs(cls, kwargs: dict):
    """``cls(**kwargs)``, but a misspelt keyword is a ``ConfigError`` with a suggestion, not a ``TypeError``."""
    names = sorted(f.name for f in dataclasses.fields(cls))
    for key in sorted(kwargs):
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            raise ConfigError(key, kwargs[key], "one of: " + ", ".join(names),
                              hint=f"did you mean {close[0]}=?" if close else None)
    return cls(**kwargs)


def _flag(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(field, value, "True or False")


def _role(field: str, value: object) -> None:
    if not isinstance(value, str) or not _ROLE_ARN.fullmatch(value):
        raise ConfigError(field, value, _ROLE_ALLOWED)


def _s3_prefix(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("s3://"):
        raise ConfigError("s3_prefix", value, "None or 's3://bucket[/prefix]'")
    bucket, _, prefix = value[len("s3://"):].rstrip("/").partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IP_ADDRESS.fullmatch(bucket):
        raise ConfigError("s3_prefix", value, _BUCKET_ALLOWED)
    if prefix.startswith("/") or not prefix.isprintable():
        raise ConfigError("s3_prefix", value, "'s3://bucket/prefix' with a prefix that has no leading "
                                              "slash and no control characters")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _kms_key(value: object) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > 2048 or not _KMS_KEY.fullmatch(value)):
        raise ConfigError("kms_key_id", value, _KMS_ALLOWED,
                          hint="the key encrypts every object written to S3 for this endpoint (SSE-KMS)")


def _tags(value: object) -> tuple[tuple[str, str], ...]:
    if isinstance(value, (str, bytes)):
        raise ConfigError("tags", value, _TAGS_ALLOWED)
    try:
        pairs = list(value.items() if isinstance(value, Mapping) else value)
    except TypeError:
        raise ConfigError("tags", value, _TAGS_ALLOWED) from None
    tags: dict[str, str] = {}
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ConfigError("tags", pair, _TAGS_ALLOWED)
        key, text = pair
        if not 1 <= len(key) <= 128 or key.lower().startswith(RESERVED_TAG_PREFIXES):
            raise ConfigError("tags", {key: text}, _TAG_KEY_ALLOWED,
                              hint="'aws:' is reserved by AWS, 'mf-sm-async:' by this package")
        if len(text) > 256:
            raise ConfigError("tags", {key: text}, "tag values of 0 to 256 characters")
        if tags.get(key, text) != text:
            raise ConfigError("tags", {key: text}, "each tag key once", hint=f"{key!r} is also {tags[key]!r}")
        tags[key] = text
    return tuple(sorted(tags.items()))


@dataclass(frozen=True)
class EndpointSpec:
    """What to deploy and how it scales; every field is checked when the spec is made.

    ``tags`` may be given as a dict or pairs and is kept as a sorted tuple of pairs; a trailing slash
    on ``s3_prefix`` is dropped. An invalid field raises ``ConfigError`` naming it::

        >>> spec = EndpointSpec(instance_type="ml.g5.xlarge", max_instances=4, tags={"team": "ml"})
        >>> spec.tags
        (('team', 'ml'),)
        >>> EndpointSpec(s3_prefix="s3://my-bucket/runs/").s3_prefix
        's3://my-bucket/runs'
        >>> EndpointSpec(max_instances=0)
        Traceback (most recent call last):
        ...
        mf_sm_async.errors.ConfigError: max_instances=0 is invalid: allowed an integer from 1 to 1000
        >>> EndpointSpec().resolve_role("local")
        'arn:aws:iam::123456789012:role/mf-sm-async-local'
    """

    name: str | None = None
    instance_type: str = "ml.m5.large"
    min_instances: int = 0
    max_instances: int = 2
    initial_instances: int = 1
    max_concurrent_invocations_per_instance: int = 4
    notifications: bool = True
    s3_prefix: str | None = None
    teardown: str = "zero"
    target: str | None = None
    role_arn: str | None = None
    image_uri: str | None = None
    backlog_per_instance_target: float = 5.0
    scale_in_cooldown_seconds: int = 300
    scale_out_cooldown_seconds: int = 60
    tags: tuple[tuple[str, str], ...] = ()
    kms_key_id: str | None = None  # SSE-KMS for every object written: model, payloads, journal, outputs

    def __post_init__(self) -> None:
        def normalise(field: str, value: object) -> None:
            object.__setattr__(self, field, value)

        if self.name is not None and (not isinstance(self.name, str) or len(self.name) > 63
                                      or not _NAME.fullmatch(self.name)):
            raise ConfigError("name", self.name, "None or 1 to 63 letters, digits and hyphens, "
                                                 "starting and ending with a letter or digit")
        if not isinstance(self.instance_type, str) or not _INSTANCE_TYPE.fullmatch(self.instance_type):
            raise ConfigError("instance_type", self.instance_type,
                              "an instance type 'ml.<family>.<size>' such as 'ml.m5.large' or 'ml.g5.xlarge'")
        # max_instances first: the other two counts are checked against it.
        high = _integer("max_instances", self.max_instances, 1, 1000)
        ranges = {"max_instances": (1, 1000), "min_instances": (0, high), "initial_instances": (1, high),
                  "max_concurrent_invocations_per_instance": (1, 1000),
                  "scale_in_cooldown_seconds": (0, 86_400), "scale_out_cooldown_seconds": (0, 86_400)}
        for field, (low, top) in ranges.items():
            top_text = f"max_instances ({high})" if field in ("min_instances", "initial_instances") else None
            normalise(field, _integer(field, getattr(self, field), low, top, top_text))
        _flag("notifications", self.notifications)
        normalise("s3_prefix", _s3_prefix(self.s3_prefix))
        if self.teardown not in TEARDOWN_MODES:
            raise ConfigError("teardown", self.teardown, "one of " + ", ".join(map(repr, TEARDOWN_MODES)))
        if self.target is not None and self.target not in TARGETS:
            raise ConfigError("target", self.target, "None, 'local' or 'aws'")
        if self.role_arn is not None:
            _role("role_arn", self.role_arn)
        if self.image_uri is not None and (not isinstance(self.image_uri, str) or not 1 <= len(self.image_uri) <= 255
                                           or any(c.isspace() for c in self.image_uri)):
            raise ConfigError("image_uri", self.image_uri, "None or 1 to 255 characters without whitespace")
        normalise("backlog_per_instance_target",
                  _number("backlog_per_instance_target", self.backlog_per_instance_target, 0, 1_000_000))
        normalise("tags", _tags(self.tags))
        _kms_key(self.kms_key_id)

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> EndpointSpec:
        """Like ``EndpointSpec(**kwargs)``, but a misspelt keyword is a ``ConfigError``, not a ``TypeError``.

        >>> EndpointSpec.from_kwargs(max_instances=3).max_instances
        3
        """
        return _from_kwargs(cls, kwargs)

    def resolve_role(self, target: str) -> str:
        """The execution role for ``target``: ``role_arn``, else ``$MF_SM_ASYNC_ROLE_ARN`` (AWS) or a dummy (local).

        >>> EndpointSpec(role_arn="arn:aws:iam::111122223333:role/sm").resolve_role("aws")
        'arn:aws:iam::111122223333:role/sm'
        """
        if target not in TARGETS:
            raise ConfigError("target", target, "'local' or 'aws'")
        if self.role_arn:
            return self.role_arn
        if target == "local":
            return LOCAL_ROLE_ARN
        from_env = os.environ.get(ROLE_ENV)
        if from_env:
            _role(ROLE_ENV, from_env)
            return from_env
        raise ConfigError("role_arn", None, f"an IAM role ARN for the AWS target (argument role_arn= or {ROLE_ENV})",
                          hint=f"pass role_arn='arn:aws:iam::<account>:role/<name>' or export {ROLE_ENV}; "
                               "the role needs SageMaker's execution-role permissions")


ON_ERROR_MODES = ("collect", "raise")


@dataclass(frozen=True)
class BatchSpec:
    """The options of ``AsyncEndpoint.predict``, every one checked when the spec is made.

    Frame payloads take the codecs' content types (``mf_sm_async.batch.codecs.CONTENT_TYPES``); with
    ``payload_column`` any MIME type goes, as each value is sent as it is.

    >>> BatchSpec(max_in_flight=8).request_ttl_seconds
    3600
    """

    rows_per_payload: int | None = None
    max_payload_bytes: int | None = None
    content_type: str = "application/jsonlines"
    accept: str | None = None
    max_in_flight: int = 64
    progress: object = "auto"
    on_error: str = "collect"
    resume: bool = False
    run_id: str | None = None
    keep_inputs: bool = False
    request_ttl_seconds: int = 3600        # a dead client's backlog expires within the hour
    invocation_timeout_seconds: int = 900
    method: str | None = None              # the estimator method, sent as CustomAttributes method=<name>
    custom_attributes: str | None = None
    payload_column: str | None = None
    upload_threads: int = 16
    download_threads: int = 16

    def __post_init__(self) -> None:
        _integer("max_in_flight", self.max_in_flight, 1, 10_000)
        _integer("request_ttl_seconds", self.request_ttl_seconds, 60, 21_600)
        _integer("invocation_timeout_seconds", self.invocation_timeout_seconds, 1, 3_600)
        _integer("upload_threads", self.upload_threads, 1, 256)
        _integer("download_threads", self.download_threads, 1, 256)
        if self.on_error not in ON_ERROR_MODES:
            raise ConfigError("on_error", self.on_error, " or ".join(repr(m) for m in ON_ERROR_MODES))
        _flag("resume", self.resume)
        _flag("keep_inputs", self.keep_inputs)
        if not (self.progress in ("auto", True, False, None) or callable(self.progress)):
            raise ConfigError("progress", self.progress, "'auto', True, False, None or a callable taking an event")
        if self.method is not None and self.custom_attributes is not None:
            raise ConfigError("method", self.method, "None when custom_attributes is given",
                              hint="put method=<name> into custom_attributes instead")
        if self.method is not None and not (isinstance(self.method, str) and self.method.isidentifier()):
            raise ConfigError("method", self.method, "an estimator method name such as 'predict_proba'")
        for name in ("custom_attributes", "accept", "payload_column"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(name, value, "a string or None")
        if self.custom_attributes is not None and (len(self.custom_attributes) > 1024
                                                   or not self.custom_attributes.isascii()):
            raise ConfigError("custom_attributes", self.custom_attributes, "at most 1024 ASCII characters")
        if self.run_id is not None:
            from .batch.run import check_run_id

            check_run_id(self.run_id)
        self._check_payloads()

    def _check_payloads(self) -> None:
        """Sizing and content types, here so that a bad one fails before anything is uploaded or invoked
        (and, in a flow, when the flow starts). The codecs own the list of frame content types."""
        from .batch.codecs import check_content_type  # pandas: loaded only when a BatchSpec is made
        from .batch.plan import MAX_PAYLOAD_BYTES, MAX_ROWS_PER_PAYLOAD

        if self.rows_per_payload is not None:
            _integer("rows_per_payload", self.rows_per_payload, 1, MAX_ROWS_PER_PAYLOAD)
        if self.max_payload_bytes is not None:
            _integer("max_payload_bytes", self.max_payload_bytes, 1, MAX_PAYLOAD_BYTES,
                     f"{MAX_PAYLOAD_BYTES} (1 GiB, SageMaker's largest asynchronous payload)")
            if self.rows_per_payload is not None:
                raise ConfigError("max_payload_bytes", self.max_payload_bytes, "None when rows_per_payload is given",
                                  hint="size payloads by rows_per_payload or by max_payload_bytes, not both")
        if self.payload_column is None:
            check_content_type(self.content_type)
            if self.accept is not None:
                check_content_type(self.accept, "accept")
            return
        for name in ("rows_per_payload", "max_payload_bytes"):
            if getattr(self, name) is not None:
                raise ConfigError(name, getattr(self, name), "None when payload_column is given",
                                  hint="with payload_column each row's value is one invocation")
        for name in ("content_type", "accept"):
            value = getattr(self, name)
            if value is not None or name == "content_type":
                _media_type(name, value, "a MIME type such as 'image/jpeg' or 'application/pdf' "
                                         "(visible ASCII, at most 1024 characters)")

    @property
    def attributes(self) -> str | None:
        return f"method={self.method}" if self.method else self.custom_attributes

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> "BatchSpec":
        return _from_kwargs(cls, kwargs)


@dataclass(frozen=True)
class InvokeSpec:
    """The options of ``AsyncEndpoint.invoke_async``, checked before the payload is uploaded.

    >>> InvokeSpec(content_type="image/jpeg").request_ttl_seconds
    3600
    """

    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    inference_id: str | None = None
    request_ttl_seconds: int = 3600
    invocation_timeout_seconds: int = 900

    def __post_init__(self) -> None:
        for name in ("content_type", "accept"):
            value = getattr(self, name)
            if value is not None:
                _media_type(name, value, "None or a MIME type such as 'application/json' (visible ASCII, "
                                         "at most 1024 characters)")
        if self.custom_attributes is not None and not (
                isinstance(self.custom_attributes, str) and len(self.custom_attributes) <= 1024
                and re.fullmatch(r"[\x20-\x7e\t]*", self.custom_attributes)):
            raise ConfigError("custom_attributes", self.custom_attributes, "None or at most 1024 visible ASCII characters")
        if self.inference_id is not None and not (isinstance(self.inference_id, str)
                                                  and re.fullmatch(r"[\x20-\x7e]{1,64}", self.inference_id)):
            raise ConfigError("inference_id", self.inference_id, "None or 1 to 64 visible ASCII characters")
        _integer("request_ttl_seconds", self.request_ttl_seconds, 60, 21_600)
        _integer("invocation_timeout_seconds", self.invocation_timeout_seconds, 1, 3_600)

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> "InvokeSpec":
        return _from_kwargs(cls, kwargs)
