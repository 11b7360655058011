"""The emulator's HTTP face: one URL that answers like AWS for every service the product uses.

A WSGI layer in front of moto's server app owns the routes moto gets wrong (the async runtime, the
endpoint lifecycle) and passes everything else through to moto unchanged.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
from pathlib import Path

from cheroot import wsgi
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import DomainDispatcherApplication, create_backend_app

from . import control_api, moto_patches
from .autoscaling import Autoscaler
from .clock import Clock
from .control_plane import OPERATIONS, ControlPlane
from .faults import Faults
from .invocation import AsyncRequest
from .leases import LeaseKeeper
from .journal import Journal, RequestLog, is_state_change, operation, restore_sqs_messages, save_sqs_messages
from .invocation import parse_request
from .notifications import Notifier
from .objects import ObjectBackend, ObjectStore
from .s3_proxy import S3Proxy, is_s3_request
from .results import ResultWriter, failure_location, output_location
from .wire import AwsError, credential_scope, error_response, json_response, validation_error

log = logging.getLogger(__name__)

_ASYNC = re.compile(r"^/endpoints/([^/]+)/async-invocations/?$")
_SYNC = re.compile(r"^/endpoints/([^/]+)/invocations/?$")
def _region(environ: dict) -> str:
    scope = credential_scope(environ)
    return scope.region if scope else os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


def _slow_down(start_response):
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message><RequestId>mf-sm-async-fault</RequestId></Error>")
    start_response("503 Slow Down", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


def _from_loopback(environ: dict) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address((environ.get("REMOTE_ADDR") or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def _read_body(environ: dict) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


class Emulator:
    """Everything the daemon serves: moto's app plus our runtime and control plane."""

    def __init__(self, state_dir: Path, *, time_scale: float = 1.0, account_id: str = DEFAULT_ACCOUNT_ID):
        moto_patches.apply()
        self.state_dir = Path(state_dir)
        self.account_id = account_id
        self.clock = Clock(time_scale)
        self.objects = ObjectBackend(self.state_dir / "s3", self.state_dir / "s3.log").start()
        self.store = ObjectStore(self.objects.port)
        self.s3_proxy = S3Proxy(self.objects.port)
        self.faults = Faults()
        self.journal = Journal(self.state_dir)
        notifier = self.notifier = Notifier(account_id)
        writer = ResultWriter(self.store, notifier,
                              drop_notification=lambda endpoint: self.faults.take("lose_notification", endpoint=endpoint))
        self.control = ControlPlane(account_id=account_id, store=self.store, notifier=notifier, writer=writer,
                                    clock=self.clock, state_dir=self.state_dir, request_log=RequestLog(self.state_dir))
        self.moto = DomainDispatcherApplication(create_backend_app)
        self._restore()
        keeper = LeaseKeeper(self.state_dir / "s3", account_id)
        self.autoscaler = Autoscaler(self.control, self.clock, account_id, minute_hooks=[keeper.check])
        self.autoscaler.start()

    def _restore(self) -> None:
        """Bring back what the previous daemon on this state directory had (see :mod:`.journal`)."""
        self.notifier.muted = True
        try:
            calls = self.journal.replay(self)
        finally:
            self.notifier.muted = False
        restored = 0
        for region, record in self.control.request_log.pending():
            runtime = self.control.runtime(region, record["endpoint_name"])
            if runtime is None:
                log.warning("request %s dropped: its endpoint is gone", record["inference_id"])
                continue
            fields = {k: v for k, v in record.items() if k in AsyncRequest.__dataclass_fields__}
            runtime.submit(AsyncRequest(**fields), restored=True)
            restored += 1
        messages = restore_sqs_messages(self.state_dir, self.account_id)
        if calls or restored or messages:
            log.info("restored %d control-plane calls, %d queued requests, %d SQS messages", calls, restored, messages)

    # WSGI ---------------------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path.startswith(control_api.PREFIX):
                if not _from_loopback(environ):  # even with --allow-remote: it kills processes, arms faults
                    raise AwsError("AccessDenied", "the emulator's control API answers loopback clients only", 403)
                return control_api.handle(self, path[len(control_api.PREFIX):], method, _read_body(environ),
                                          start_response)
            if is_s3_request(environ):
                bucket = path.lstrip("/").split("/", 1)[0]
                if self.faults.take("s3_slowdown", bucket=bucket, method=method):
                    return _slow_down(start_response)
                return self.s3_proxy(environ, start_response)
            if method == "POST" and (match := _ASYNC.match(path)):
                return self._invoke_async(match.group(1), environ, start_response)
            if method == "POST" and (match := _SYNC.match(path)):
                return self._invoke_sync(match.group(1), environ, start_response)
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target.startswith("SageMaker.") and target.split(".", 1)[1] in OPERATIONS:
                return self._sagemaker(target.split(".", 1)[1], environ, start_response)
        except AwsError as error:
            return error_response(start_response, error, "json" if "HTTP_X_AMZ_TARGET" in environ else "rest-json")
        except Exception as exc:  # a bug of ours: answer as AWS does (500 InternalFailure), keep the trace
            log.exception("internal failure on %s %s", method, path)
            return error_response(start_response, AwsError("InternalFailure", f"{type(exc).__name__}: {exc}", 500),
                                  "json" if "HTTP_X_AMZ_TARGET" in environ else "rest-json")
        return self._moto_journaled(environ, start_response)

    def _moto_journaled(self, environ, start_response):
        """moto answers; a successful state change is journaled so a restart replays it."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("mf_sm_async.replay"):
            return self.moto(environ, start_response)
        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        if not is_state_change(operation(environ, body)):
            return self.moto(environ, start_response)
        status = []

        def capture(line, headers, exc_info=None):
            status.append(line)
            return start_response(line, headers, exc_info) if exc_info else start_response(line, headers)
        answer = list(self.moto(environ, capture))
        if status and status[0].startswith("2"):
            self.journal.record(environ, body)
        return answer

    def _sagemaker(self, op: str, environ, start_response):
        body = _read_body(environ)
        params = json.loads(body or b"{}")

        def call_moto() -> dict:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            captured = {}

            def capture(status, headers, exc_info=None):
                captured["status"] = int(status.split()[0])
                return lambda data: None
            data = b"".join(self.moto(environ, capture))
            answer = json.loads(data or b"{}")
            if captured["status"] >= 400:
                raise AwsError(answer.get("__type", "ValidationError").split("#")[-1],
                               answer.get("message") or answer.get("Message") or "", captured["status"])
            return answer

        answer = self.control.handle(op, params, _region(environ), call_moto)
        if is_state_change(op) and not environ.get("mf_sm_async.replay"):
            self.journal.record(environ, body)
        return json_response(start_response, 200, answer)

    def _runtime(self, region: str, name: str):
        runtime = self.control.runtime(region, name)
        if runtime is None:
            raise validation_error(f"Endpoint {name} of account {self.account_id} not found.")
        return runtime

    def _invoke_async(self, name: str, environ, start_response):
        runtime = self._runtime(_region(environ), name)
        if not runtime.settings.async_config:
            raise validation_error(f"Endpoint {name} is not configured for asynchronous inference: its "
                                   "endpoint config has no AsyncInferenceConfig. Use InvokeEndpoint.")
        status = self.control.backend(runtime.settings.region).endpoints[name].endpoint_status
        if status not in ("InService", "Updating"):
            raise validation_error(f"Endpoint {name} is not in service (status {status}).")
        request = parse_request(name, environ, _read_body(environ))
        if self.faults.take("throttle", endpoint=name):
            raise AwsError("ThrottlingException", "Rate exceeded", 400)
        runtime.submit(request)
        return json_response(start_response, 202, {"InferenceId": request.inference_id}, [
            ("X-Amzn-SageMaker-OutputLocation", output_location(runtime.settings, request)),
            ("X-Amzn-SageMaker-FailureLocation", failure_location(runtime.settings, request)),
        ])

    def _invoke_sync(self, name: str, environ, start_response):
        runtime = self._runtime(_region(environ), name)
        if runtime.settings.async_config:
            raise validation_error(f"Endpoint {name} is an asynchronous inference endpoint: it accepts "
                                   "only InvokeEndpointAsync.")
        raise AwsError("ValidationError", "Real-time InvokeEndpoint is not emulated; use an endpoint "
                       "config with AsyncInferenceConfig and InvokeEndpointAsync.")

    def shutdown(self) -> None:
        self.autoscaler.stop()
        save_sqs_messages(self.state_dir, self.account_id)
        self.control.shutdown()
        self.objects.stop()


class EmulatorServer:
    """The emulator served on 127.0.0.1 by cheroot's thread pool (faster than werkzeug here)."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0, threads: int = 48):
        self.emulator = emulator
        self._server = wsgi.Server((host, port), emulator, numthreads=threads, request_queue_size=256,
                                   timeout=60, server_name="mf-sm-async-emulator")
        self._server.prepare()
        self.host, self.port = self._server.bind_addr[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where clients on this machine reach it (a wildcard bind is reached on loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve()

    def start_in_thread(self) -> "EmulatorServer":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name="emulator-http")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.emulator.shutdown()
        self._server.stop()
