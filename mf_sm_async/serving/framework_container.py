"""SageMaker's framework containers in script mode: the scikit-learn image, and the XGBoost image when the
model sets ``SAGEMAKER_PROGRAM``, served the way their single-model server does (Gunicorn + Flask from
``sagemaker-containers`` 2.8: ``_transformer.py``, ``_worker.py``, ``_encoders.py``; the frameworks'
``serving.py`` / ``handler_service.py`` for the defaults).

The entry point is ``$SAGEMAKER_PROGRAM`` (``inference.py`` or ``inference``), imported from the code
directory the emulator prepared from ``$SAGEMAKER_SUBMIT_DIRECTORY`` (an ``s3://.../sourcedir.tar.gz``,
or ``/opt/ml/model/code``, i.e. ``code/`` inside model.tar.gz). Like the real container, there is no
default for either: without ``SAGEMAKER_PROGRAM`` the container cannot start (its worker fails every
request, including ``/ping``), and the endpoint goes Failed saying so.

The module may define ``model_fn(model_dir)``, ``input_fn(input_data, content_type)``,
``predict_fn(input_data, model)``, ``output_fn(prediction, accept)`` or ``transform_fn(model,
input_data, content_type, accept)`` instead of the last three. They are called with exactly those
arguments (the container passes no context). A missing one is the container's default:

- ``model_fn``: none; the container fails to load ("Please provide a model_fn implementation.").
- ``input_fn``: by exact Content-Type (none means ``application/json``): ``application/json`` ->
  ``numpy.array(json.loads(body))``, ``text/csv`` -> rows of ``csv.reader``, squeezed, ``application/x-npy``
  -> ``numpy.load`` (object arrays refused here); scikit-learn casts JSON and CSV to float32. The XGBoost
  image instead builds a ``DMatrix`` from ``text/csv``, ``text/libsvm`` or ``text/x-libsvm``. Any other
  type: 415 with a JSON body ``{"error", "error-message", "stack-trace"}``.
- ``predict_fn``: ``model.predict(data)`` (XGBoost: ``validate_features=False``).
- ``output_fn``: by Accept (none or ``*/*``: ``$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, else
  ``application/json``): JSON, CSV (one row per line) or NPY; any other: 406.

``application/json`` and ``text/csv`` bodies (exact match) reach ``input_fn`` / ``transform_fn`` as ``str``,
all others as ``bytes``. A result given as ``(body, content_type)`` is answered with that type; a bare
``str`` / ``bytes`` the way Flask answers it (``text/html; charset=utf-8``); ``text/*`` types get
``; charset=utf-8`` as Flask adds it. An exception in a user function is a 500.

Handlers written for both places (``mf_sm_async/serving/sklearn_inference.py``) read request headers
through :func:`current_headers` here and through ``flask.request`` on AWS.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import sys
import threading
import traceback

import numpy as np

from mf_sm_async.errors import DeployError
from mf_sm_async.local.model_server import ContainerError

JSON, CSV, NPY = "application/json", "text/csv", "application/x-npy"
UTF8_TYPES = (JSON, CSV)
_FLASK_CHARSET_TYPES = ("application/ecmascript", "application/javascript", "application/sql", "application/xml",
                        "application/xml-dtd", "application/xml-external-parsed-entity")
_request = threading.local()


def current_headers() -> dict[str, str] | None:
    """The headers of the request this thread is serving (None outside a request)."""
    return getattr(_request, "headers", None)


class UnsupportedFormatError(Exception):
    """sagemaker_containers' error for a type the default codecs do not handle (415 in, 406 out)."""

    def __init__(self, content_type: str):
        super().__init__(f"Content type {content_type} is not supported by this framework.\n\n"
                         "Please implement input_fn to to deserialize the request data or an output_fn to\n"
                         "serialize the response. For more information, see the SageMaker Python SDK README.")


# default codecs (sagemaker_containers._encoders) ------------------------------------------------------
def decode(data, content_type: str):
    if content_type == JSON:
        return np.array(json.loads(data))
    if content_type == CSV:
        return np.array(list(csv.reader(io.StringIO(data), delimiter=",", quotechar='"', doublequote=True,
                                        strict=True))).squeeze()
    if content_type == NPY:
        return np.load(io.BytesIO(data), allow_pickle=False)
    raise UnsupportedFormatError(content_type)


def encode(prediction, accept: str):
    if accept == JSON:
        return json.dumps(prediction, default=lambda v: v.tolist() if hasattr(v, "tolist") else
                          json.JSONEncoder().default(v))
    if accept == CSV:
        array = np.array(prediction)
        if array.ndim == 1:
            array = array.reshape(array.shape[0], 1)
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True,
                   strict=True).writerows(array)
        return buffer.getvalue()
    if accept == NPY:
        buffer = io.BytesIO()
        np.save(buffer, prediction)
        return buffer.getvalue()
    raise UnsupportedFormatError(accept)


# the frameworks' defaults -------------------------------------------------------------------------------
def _no_model_fn(model_dir):
    raise NotImplementedError("Please provide a model_fn implementation.\n"
                              "See documentation for model_fn at https://github.com/aws/sagemaker-python-sdk")


def sklearn_input_fn(input_data, content_type):
    array = decode(input_data, content_type)
    return array.astype(np.float32) if content_type in UTF8_TYPES else array


def sklearn_predict_fn(input_data, model):
    return model.predict(input_data)


def xgboost_input_fn(input_data, content_type):
    """sagemaker_xgboost_container.encoder.decode: csv / libsvm to a DMatrix, by media type."""
    from mf_sm_async.serving import xgboost_container

    media = content_type.split(";")[0].strip()
    if media == CSV:
        return xgboost_container.csv_to_dmatrix(input_data if isinstance(input_data, str) else input_data.decode())
    if media in ("text/libsvm", "text/x-libsvm"):
        text = input_data if isinstance(input_data, str) else bytes(input_data).decode("utf-8")
        return xgboost_container.libsvm_to_dmatrix(text.strip(), zero_based_shift=True)
    raise UnsupportedFormatError(media)


def xgboost_predict_fn(input_data, model):
    return model.predict(input_data, validate_features=False)


def default_output_fn(prediction, accept):
    return encode(prediction, accept), accept


DISPLAY_NAMES = {"sklearn": "scikit-learn", "xgboost": "XGBoost"}
DEFAULTS = {
    "sklearn": {"model_fn": _no_model_fn, "input_fn": sklearn_input_fn, "predict_fn": sklearn_predict_fn,
                "output_fn": default_output_fn},
    "xgboost": {"model_fn": _no_model_fn, "input_fn": xgboost_input_fn, "predict_fn": xgboost_predict_fn,
                "output_fn": default_output_fn},
}


def _flask_content_type(mimetype: str) -> str:
    """Werkzeug's get_content_type: text types (and a few others) gain a charset."""
    if "charset" not in mimetype and (mimetype.startswith("text/") or mimetype in _FLASK_CHARSET_TYPES
                                      or mimetype.endswith("+xml")):
        return f"{mimetype}; charset=utf-8"
    return mimetype


def _error_json(exc: Exception) -> bytes:
    return json.dumps({"error": type(exc).__name__, "error-message": str(exc),
                       "stack-trace": "".join(traceback.format_exception(exc))}).encode()


class ScriptMode:
    """The user module ``$SAGEMAKER_PROGRAM`` from ``code_dir``, loaded with ``model_fn(model_dir)``."""

    def __init__(self, model_dir: str, code_dir: str, framework: str):
        program = os.environ.get("SAGEMAKER_PROGRAM")
        if not program:
            raise DeployError(
                f"the {DISPLAY_NAMES[framework]} framework container has no entry point: SAGEMAKER_PROGRAM is not "
                "set (its server imports that module and has no default)",
                hint="set the model's Environment SAGEMAKER_PROGRAM=inference.py and SAGEMAKER_SUBMIT_DIRECTORY="
                     "/opt/ml/model/code (code/ in model.tar.gz) or s3://.../sourcedir.tar.gz")
        name = program[:-3] if program.endswith(".py") else program
        sys.path.insert(0, code_dir)
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise DeployError(f"ImportModuleError: importing {program} from {code_dir} failed: "
                              f"{type(exc).__name__}: {exc}", hint="SAGEMAKER_SUBMIT_DIRECTORY must hold "
                              "SAGEMAKER_PROGRAM") from exc
        defaults = DEFAULTS[framework]
        user = {fn: getattr(module, fn, None) for fn in ("model_fn", "input_fn", "predict_fn", "output_fn",
                                                         "transform_fn")}
        if user["transform_fn"] and (user["input_fn"] or user["predict_fn"] or user["output_fn"]):
            raise DeployError(f"{program}: Cannot use transform_fn implementation with input_fn, predict_fn, "
                              "and/or output_fn")
        self.transform_fn = user["transform_fn"]
        self.input_fn = user["input_fn"] or defaults["input_fn"]
        self.predict_fn = user["predict_fn"] or defaults["predict_fn"]
        self.output_fn = user["output_fn"] or defaults["output_fn"]
        self._default_input = user["input_fn"] is None
        self._default_output = user["output_fn"] is None
        try:
            self.model = (user["model_fn"] or defaults["model_fn"])(model_dir)
        except Exception as exc:
            raise DeployError(f"model_fn({model_dir!r}) in {program} raised {type(exc).__name__}: {exc}") from exc

    def invoke(self, body: bytes, content_type: str | None, accept: str | None, context) -> tuple[bytes, str]:
        content_type = context.request_headers.get("ContentType") or content_type or JSON
        if not accept or accept == "*/*":
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON)
        data = body.decode("utf-8") if content_type in UTF8_TYPES else body
        _request.headers = context.request_headers
        try:
            result = self._transform(data, content_type, accept)
        finally:
            _request.headers = None
        if isinstance(result, tuple):
            out, mimetype = result[0], _flask_content_type(result[1])
        else:
            out, mimetype = result, "text/html; charset=utf-8"  # Flask's answer to a view returning a string
        return (out.encode("utf-8") if isinstance(out, str) else bytes(out)), mimetype

    def _transform(self, data, content_type: str, accept: str):
        if self.transform_fn is not None:
            return self.transform_fn(self.model, data, content_type, accept)
        try:
            decoded = self.input_fn(data, content_type)
        except UnsupportedFormatError as exc:
            if not self._default_input:
                raise
            raise ContainerError(415, _error_json(exc), JSON) from None
        prediction = self.predict_fn(decoded, self.model)
        try:
            return self.output_fn(prediction, accept)
        except UnsupportedFormatError as exc:
            if not self._default_output:
                raise
            raise ContainerError(406, _error_json(exc), JSON) from None
