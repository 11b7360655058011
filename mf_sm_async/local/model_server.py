"""One instance of a local endpoint: SageMaker's container contract served over HTTP.

Run by the emulator daemon as::

    python -m mf_sm_async.local.model_server --model-dir DIR --port PORT [--host 127.0.0.1]
        [--container inference-toolkit|sklearn|xgboost] [--container-version V] [--code-dir CODE]

``DIR`` is an unpacked model.tar.gz (SageMaker's ``/opt/ml/model``). ``--container`` says which
container's behaviour answers the requests:

- ``inference-toolkit`` (the default; our own ``mf-sm-async/local-handler`` image):
  ``DIR/code/inference.py`` is the handler module, called the way the sagemaker-inference-toolkit calls
  it: ``model_fn(model_dir)`` once before listening, then per request ``input_fn`` -> ``predict_fn`` ->
  ``output_fn`` or ``transform_fn`` instead of those three. Each may take one extra trailing ``context``
  argument (a ``RequestContext``). As in the toolkit, ``application/json`` and ``text/csv`` bodies reach
  ``input_fn`` as ``str``, all other types as ``bytes``; a missing Content-Type is ``application/json``; a
  missing or ``*/*`` Accept becomes ``$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` or ``application/json``.
- ``sklearn``: the scikit-learn framework image, and ``xgboost`` with ``$SAGEMAKER_PROGRAM`` set: the
  module ``$SAGEMAKER_PROGRAM`` from ``CODE`` (default ``DIR/code``); see
  :mod:`mf_sm_async.serving.framework_container`.
- ``xgboost`` without ``$SAGEMAKER_PROGRAM``: the built-in XGBoost algorithm of image version ``V``
  (default: the newest); see :mod:`mf_sm_async.serving.xgboost_container`.

``GET /ping`` answers 200 (the model is loaded before the port opens). ``POST /invocations`` answers 200
with the encoded prediction, the container's own status for what it refuses (415 for a content type it
cannot decode, 406 for an accept type it cannot encode, ...), 500 for any other exception; such an error
body is UTF-8 text: ``<ExceptionType>: <message>``, a blank line, the traceback's last frames.

Exit codes: 0 on SIGTERM or when the parent process dies; 2 bad arguments; 3 the model could not be
loaded; 4 the port could not be bound. On 3 and 4 the last stderr line is
``model server failed: <reason>``. ``--port 0`` binds a free port; the stdout line
``model server listening on http://HOST:PORT pid=PID`` names the one bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.server
import importlib
import inspect
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
from urllib.parse import urlsplit

import numpy as np

from mf_sm_async.errors import DeployError, ModelError

JSON, CSV, NPY = "application/json", "text/csv", "application/x-npy"
UTF8_TYPES = (JSON, CSV)  # exact match, like the toolkit: "text/csv; charset=utf-8" stays bytes
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
EXIT_MODEL, EXIT_BIND = 3, 4
FAILURE_PREFIX = "model server failed: "


class ContainerError(Exception):
    """A container's own non-200 answer to one invocation (status, body, content type)."""

    def __init__(self, status: int, body: bytes | str, content_type: str = "text/plain; charset=utf-8"):
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.content_type = content_type
        super().__init__(f"HTTP {status}: {self.body[:200].decode('utf-8', 'replace')}")


class UnsupportedFormatError(ModelError):
    """The default input_fn / output_fn cannot decode or encode this content type (HTTP 415)."""

    status = 415


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """The optional trailing ``context`` argument of the handler functions."""

    custom_attributes: str | None  # the X-Amzn-SageMaker-Custom-Attributes header, verbatim
    request_headers: dict[str, str]  # every request header, names as the client sent them


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def default_input_fn(input_data, content_type):
    media = _media_type(content_type)
    if media == JSON:
        data = json.loads(input_data)
        try:  # the toolkit returns numpy arrays; keep objects and ragged lists as parsed
            array = np.array(data) if isinstance(data, list) else None
        except ValueError:
            array = None
        return data if array is None or array.dtype == object else array
    if media == CSV:
        text = input_data if isinstance(input_data, str) else bytes(input_data).decode("utf-8")
        rows = [line for line in text.splitlines() if line.strip()]
        if not rows:
            return np.empty((0, 0))
        return np.genfromtxt(io.StringIO("\n".join(rows)), delimiter=",", dtype=float).reshape(len(rows), -1)
    if media == NPY:
        return np.load(io.BytesIO(input_data), allow_pickle=False)
    raise UnsupportedFormatError(
        f"unsupported content type {content_type!r}: the default input_fn decodes {JSON}, {CSV}, {NPY}",
        hint="define input_fn(input_data, content_type) in code/inference.py",
    )


def default_predict_fn(data, model):
    if callable(model):
        return model(data)
    if callable(getattr(model, "predict", None)):
        return model.predict(data)
    raise ModelError(
        f"the model returned by model_fn is a {type(model).__name__}: neither callable nor has predict()",
        hint="define predict_fn(data, model) in code/inference.py",
    )


def _jsonable(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def default_output_fn(prediction, accept):
    media = _media_type(accept)
    if media == JSON:
        return json.dumps(prediction, default=_jsonable)
    if media == CSV:
        buffer = io.StringIO()
        np.savetxt(buffer, np.atleast_1d(np.asarray(prediction)), delimiter=",", fmt="%s")
        return buffer.getvalue()
    if media == NPY:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(prediction), allow_pickle=False)
        return buffer.getvalue()
    raise UnsupportedFormatError(
        f"unsupported accept type {accept!r}: the default output_fn encodes {JSON}, {CSV}, {NPY}",
        hint="define output_fn(prediction, accept) in code/inference.py",
    )


def _takes_context(fn, n_args: int) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > n_args


class Handler:
    """``code/inference.py`` of one model directory, loaded and ready to answer invocations."""

    def __init__(self, model_dir: str):
        model_dir = os.path.abspath(model_dir)
        code_dir = os.path.join(model_dir, "code")
        path = os.path.join(code_dir, "inference.py")
        if not os.path.isfile(path):
            raise DeployError(
                f"{path} is missing: the model archive has no code/inference.py handler",
                hint="package the model with package_estimator() or package_directory()",
            )
        sys.path.insert(0, code_dir)  # the toolkit's way: the handler may import its sibling modules
        try:
            module = importlib.import_module("inference")
        except Exception as exc:
            raise DeployError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
        if not callable(getattr(module, "model_fn", None)):
            raise DeployError(f"{path} defines no model_fn(model_dir): the model cannot be loaded")
        fns = {name: getattr(module, name, None) for name in ("input_fn", "predict_fn", "output_fn", "transform_fn")}
        if fns["transform_fn"] and (fns["input_fn"] or fns["predict_fn"] or fns["output_fn"]):
            raise DeployError(f"{path} defines transform_fn together with input_fn/predict_fn/output_fn: keep one style")
        self.transform_fn = fns["transform_fn"]
        self.input_fn = fns["input_fn"] or default_input_fn
        self.predict_fn = fns["predict_fn"] or default_predict_fn
        self.output_fn = fns["output_fn"] or default_output_fn
        try:
            self.model = module.model_fn(model_dir)
        except Exception as exc:
            raise DeployError(f"model_fn({model_dir!r}) in {path} raised {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _call(fn, context: RequestContext, *args):
        return fn(*args, context) if _takes_context(fn, len(args)) else fn(*args)

    def invoke(self, body: bytes, content_type: str | None, accept: str | None,
               context: RequestContext) -> tuple[bytes, str]:
        """Run the handler on one payload; returns the response body and its content type."""
        content_type = content_type or JSON
        if not accept or accept == "*/*":
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON)
        input_data = body.decode("utf-8") if content_type in UTF8_TYPES else body
        if self.transform_fn is not None:
            result = self._call(self.transform_fn, context, self.model, input_data, content_type, accept)
        else:
            data = self._call(self.input_fn, context, input_data, content_type)
            prediction = self._call(self.predict_fn, context, data, self.model)
            result = self._call(self.output_fn, context, prediction, accept)
        response_type = accept or JSON
        if isinstance(result, tuple) and len(result) == 2:
            result, response_type = result
        if isinstance(result, str):
            return result.encode("utf-8"), response_type
        if isinstance(result, (bytes, bytearray, memoryview)):
            return bytes(result), response_type
        raise ModelError(f"the handler returned {type(result).__name__}; expected bytes, str or (body, content_type)")


def error_body(exc: BaseException) -> bytes:
    """What a failed invocation answers (and the emulator stores at S3FailurePath)."""
    lines = [f"{type(exc).__name__}: {exc}", "", *traceback.format_exception(exc, limit=-5)]
    return "\n".join(line.rstrip("\n") for line in lines).encode("utf-8", "replace")


CONTAINERS = ("inference-toolkit", "sklearn", "xgboost")


def load_handler(container: str, model_dir: str, code_dir: str | None = None, version: str | None = None):
    """The object answering invocations for ``container`` (see the module docstring); raises DeployError."""
    if container == "inference-toolkit":
        return Handler(model_dir)
    code_dir = code_dir or os.path.join(os.path.abspath(model_dir), "code")
    if container == "xgboost" and not os.environ.get("SAGEMAKER_PROGRAM"):
        from mf_sm_async.serving.xgboost_container import XGBoostAlgorithm

        return XGBoostAlgorithm(os.path.abspath(model_dir), version)
    from mf_sm_async.serving.framework_container import ScriptMode

    return ScriptMode(os.path.abspath(model_dir), code_dir, container)


def _request_handler_class(handler):
    class RequestHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mf-sm-async-model-server"

        def log_request(self, code="-", size="-"):  # one line per invocation would drown the log
            pass

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if urlsplit(self.path).path == "/ping":
                self._reply(200, b"")
            else:
                self._reply(404, f"no route GET {self.path}".encode())

        def do_POST(self):
            if urlsplit(self.path).path != "/invocations":
                self._reply(404, f"no route POST {self.path}".encode())
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                self._reply(411, b"POST /invocations needs a Content-Length header")
                return
            body = self.rfile.read(int(length))
            if len(body) != int(length):  # the client went away mid-body
                self.close_connection = True
                return
            context = RequestContext(self.headers.get(CUSTOM_ATTRIBUTES_HEADER), dict(self.headers.items()))
            try:
                out, out_type = handler.invoke(body, self.headers.get("Content-Type"), self.headers.get("Accept"),
                                               context)
            except ContainerError as exc:
                if exc.status >= 500:
                    print(f"invocation failed: {exc}", file=sys.stderr, flush=True)
                self._reply(exc.status, exc.body, exc.content_type)
                return
            except Exception as exc:
                traceback.print_exception(exc, file=sys.stderr)
                sys.stderr.flush()
                self._reply(exc.status if isinstance(exc, UnsupportedFormatError) else 500, error_body(exc))
                return
            self._reply(200, out, out_type)

    return RequestHandler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def _exit_with_parent(interval: float = 0.5) -> None:
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(0)  # no cleanup: the daemon that owned this instance is gone

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _fail(message: str, code: int) -> int:
    print(FAILURE_PREFIX + " ".join(message.split()), file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mf_sm_async.local.model_server", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, help="an unpacked model.tar.gz (SageMaker's /opt/ml/model)")
    parser.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--container", choices=CONTAINERS, default="inference-toolkit",
                        help="whose serving behaviour to follow (default: inference-toolkit)")
    parser.add_argument("--container-version", help="the image's framework version, e.g. 1.7-1 (default: newest)")
    parser.add_argument("--code-dir", help="script mode: the directory holding $SAGEMAKER_PROGRAM "
                                           "(default: MODEL_DIR/code)")
    args = parser.parse_args(argv)
    _exit_with_parent()
    try:
        handler = load_handler(args.container, args.model_dir, args.code_dir, args.container_version)
    except DeployError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        return _fail(exc.headline + (f" (hint: {exc.hint})" if exc.hint else ""), EXIT_MODEL)
    except Exception as exc:  # a defect outside the handler's own code; still one line for FailureReason
        traceback.print_exc()
        return _fail(f"loading {args.model_dir} failed: {type(exc).__name__}: {exc}", EXIT_MODEL)
    try:
        server = _Server((args.host, args.port), _request_handler_class(handler))
    except OSError as exc:
        return _fail(f"cannot listen on http://{args.host}:{args.port}: {exc}", EXIT_BIND)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    host, port = server.server_address[:2]
    print(f"model server listening on http://{host}:{port} pid={os.getpid()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    # Run the imported copy of this module, not __main__: the container modules raise its ContainerError.
    from mf_sm_async.local.model_server import main as _main

    sys.exit(_main())
