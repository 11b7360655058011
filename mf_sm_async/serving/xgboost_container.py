"""SageMaker's built-in XGBoost algorithm, served the way its container's algorithm mode serves it.

The image ``<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-xgboost:<version>`` runs in algorithm
mode when the model sets no ``SAGEMAKER_PROGRAM`` (aws/sagemaker-xgboost-container,
``algorithm_mode/serve.py`` and ``serve_utils.py``); this module is that behaviour, request by request.
The emulator's model server runs it with ``--container xgboost`` (see
:mod:`mf_sm_async.local.model_server`). xgboost is an optional dependency: ``pip install xgboost-cpu``.

Model (``/opt/ml/model``): every file at the top of the unpacked model.tar.gz whose name does not start
with ``.`` (a training job writes one, ``xgboost-model``), each a pickled ``Booster`` or a file
``Booster.load_model`` reads (XGBoost's binary, JSON or UBJSON format). Several files are an ensemble
(the mean of their predictions, the vote for ``multi:softmax`` / ``binary:hinge``) unless
``SAGEMAKER_INFERENCE_ENSEMBLE`` is not ``true``.

Request ``Content-Type`` (parameters ignored; none at all means libsvm, as in the container):

- ``text/csv``: one row per line, no label column; an empty field is a missing value; the delimiter is
  sniffed from the first line; ``label_size`` other than 1 is refused.
- ``text/libsvm`` / ``text/x-libsvm``: ``[label] index:value ...`` per line; tokens without ``:`` (the
  label) are ignored. From image 1.7-1 on, indices are shifted to 0-based when no index is 0 (the
  current container does; older ones read indices as they are).
- anything else: 415 naming the accepted types. ``application/json`` and JSON Lines are response types
  of this container, not request types (AWS's data-format page: XGBoost "only supports text/csv from
  this list, but also supports text/libsvm"). ``application/x-recordio-protobuf`` is accepted by the
  container but not emulated: 415 saying so.

For a pickled Booster the feature count is checked as the container does (csv: the model's count or one
fewer; libsvm: at most one more), else 400 ``Unable to evaluate payload provided: ...``. An empty body
is a 204.

Response, by ``Accept`` (none or ``*/*``: ``$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, else ``text/csv``):

- ``text/csv``: one prediction per line (a multi-class row comma-separated);
- ``application/json``: ``{"predictions": [{"score": p}, ...]}``;
- ``application/jsonlines``: only with selectable inference output (below); otherwise the container
  fails the request (500), and so does this;
- anything else: 406.

Images before 1.5-1 ignore ``Accept`` and answer ``text/csv`` with every prediction on one line,
comma-separated. With ``SAGEMAKER_INFERENCE_OUTPUT`` (for example ``predicted_label,probabilities``)
each row carries the selected keys, encoded as CSV, ``{"predictions": [...]}`` or JSON Lines.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle

import numpy as np

from mf_sm_async.errors import DeployError
from mf_sm_async.images import version_key
from mf_sm_async.local.model_server import ContainerError

CSV, JSON, JSONLINES, RECORDIO = "text/csv", "application/json", "application/jsonlines", "application/x-recordio-protobuf"
SUPPORTED_ACCEPTS = [JSON, JSONLINES, RECORDIO, CSV]
LIBSVM_TYPES = ("libsvm", "text/libsvm", "text/x-libsvm")
VALID_CONTENT_TYPES = ["csv", "libsvm", "parquet", "recordio-protobuf", CSV, "text/libsvm", "text/x-libsvm",
                       "application/x-parquet", RECORDIO]
ACCEPT_BY_HEADER_FROM = "1.5-1"   # serve.py honours Accept since April 2022 (images 1.5-1 and later)
ZERO_BASED_LIBSVM_FROM = "1.7-1"  # the current serve_utils shifts 1-based libsvm indices (images built since)

BINARY_HINGE, BINARY_LOG, BINARY_LOGRAW = "binary:hinge", "binary:logistic", "binary:logitraw"
MULTI_SOFTMAX, MULTI_SOFTPROB = "multi:softmax", "multi:softprob"
REGRESSION = ("reg:squarederror", "reg:logistic", "reg:gamma", "reg:absoluteerror", "reg:tweedie")
_CLASSIFICATION = ["predicted_label", "labels", "raw_score", "raw_scores"]
_PROBABILITIES = ["probability", "probabilities"]
VALID_OBJECTIVES = {  # which selectable keys each objective can produce, as serve_utils lists them
    **{objective: ["predicted_score"] for objective in REGRESSION},
    BINARY_LOG: _CLASSIFICATION[:2] + _PROBABILITIES + _CLASSIFICATION[2:],
    BINARY_LOGRAW: _CLASSIFICATION, BINARY_HINGE: _CLASSIFICATION, MULTI_SOFTMAX: _CLASSIFICATION,
    MULTI_SOFTPROB: _CLASSIFICATION[:2] + _PROBABILITIES + _CLASSIFICATION[2:],
}


def _xgboost():
    try:
        import xgboost
    except ImportError:
        raise DeployError("the sagemaker-xgboost image needs xgboost in the emulator's Python environment",
                          hint="pip install xgboost-cpu (or xgboost)") from None
    return xgboost


def _media_type(value: str) -> tuple[str, dict]:
    """``"Text/CSV; label_size=1"`` -> ``("text/csv", {"label_size": "1"})``, as cgi.parse_header reads it."""
    media, *params = value.split(";")
    pairs = (param.split("=", 1) for param in params if "=" in param)
    return media.strip().lower(), {key.strip().lower(): val.strip().strip('"') for key, val in pairs}


def content_kind(content_type: str | None) -> str:
    """``"csv"`` / ``"libsvm"`` / ``"parquet"`` / ``"recordio-protobuf"`` (data_utils.get_content_type)."""
    if content_type is None:
        return "libsvm"
    media, params = _media_type(content_type.lower())
    if media in ("csv", CSV):
        if params.get("label_size", "1") != "1":
            raise ValueError(f"{content_type} is not an accepted csv ContentType. Optional parameter label_size "
                             "must be equal to 1")
        return "csv"
    if media in LIBSVM_TYPES:
        return "libsvm"
    if media in ("parquet", "application/x-parquet"):
        return "parquet"
    if media in ("recordio-protobuf", RECORDIO):
        return "recordio-protobuf"
    raise ValueError(f"{content_type} is not an accepted ContentType: {', '.join(VALID_CONTENT_TYPES)}.")


def csv_to_dmatrix(text: str):
    """encoder.csv_to_dmatrix: the delimiter sniffed from the first line, empty fields as NaN."""
    xgb = _xgboost()
    sniffed = csv.Sniffer().sniff(text.split("\n")[0][:512]).delimiter
    delimiter = "," if sniffed.isalnum() else sniffed
    rows = [["nan" if field == "" else field for field in line.split(delimiter)] for line in text.split("\n")]
    return xgb.DMatrix(np.array(rows).astype(float))


def libsvm_to_dmatrix(text: str, zero_based_shift: bool):
    """serve_utils._get_sparse_matrix_from_libsvm: tokens with ``:`` only, so a leading label is ignored."""
    from scipy.sparse import csr_matrix

    xgb = _xgboost()
    rows, cols, values = [], [], []
    for row, line in enumerate(text.split("\n")):
        for item in line.split(" "):
            if ":" in item:
                index, value = item.split(":")[:2]
                rows.append(row)
                cols.append(int(index))
                values.append(value)
    col = np.array(cols).astype(int)
    if zero_based_shift and len(col) and col.min() >= 1:
        col = col - 1
    return xgb.DMatrix(csr_matrix((np.array(values).astype(float), (np.array(rows), col))))


def parse_content(body: bytes, content_type: str | None, version_from) -> tuple[object, str]:
    """serve_utils.parse_content_data: (DMatrix, kind), or ValueError / RuntimeError with its message."""
    kind = content_kind(content_type)
    if kind == "csv":
        try:
            return csv_to_dmatrix(body.strip().decode("utf-8")), kind
        except Exception as exc:
            raise RuntimeError("Loading csv data failed with Exception, please ensure data is in csv format:\n "
                               f"{type(exc)}\n {exc}") from None
    if kind == "libsvm":
        try:
            return libsvm_to_dmatrix(body.strip().decode("utf-8"), version_from(ZERO_BASED_LIBSVM_FROM)), kind
        except Exception as exc:
            raise RuntimeError("Loading libsvm data failed with Exception, please ensure data is in libsvm "
                               f"format:\n {type(exc)}\n {exc}") from None
    if kind == "recordio-protobuf":
        raise RuntimeError(f"Content-type {content_type} is accepted by the XGBoost container but not emulated "
                           "locally: send text/csv or text/libsvm")
    raise RuntimeError(f"Content-type {content_type} is not supported.")


def load_boosters(model_dir: str, ensemble: bool) -> list:
    """serve_utils.get_loaded_booster: each file a pickle, else a file Booster.load_model reads."""
    xgb = _xgboost()
    paths = sorted(os.path.join(model_dir, name) for name in os.listdir(model_dir)
                   if not name.startswith(".") and os.path.isfile(os.path.join(model_dir, name)))
    if not paths:
        raise DeployError(f"no model file in {model_dir}: the built-in XGBoost algorithm loads xgboost-model "
                          "from the top of model.tar.gz", hint="package the Booster as xgboost-model "
                          "(booster.save_model('xgboost-model') or a pickle of it)")
    boosters = []
    for path in paths if ensemble else paths[:1]:
        try:
            with open(path, "rb") as handle:
                booster, pickled = pickle.load(handle), True
        except Exception as pickle_error:
            try:
                booster, pickled = xgb.Booster(), False
                booster.load_model(path)
            except Exception as xgb_error:
                raise DeployError(f"Model {path} cannot be loaded: pickle load error={pickle_error}; "
                                  f"XGB load model error={xgb_error}") from None
        if not callable(getattr(booster, "set_param", None)):
            raise DeployError(f"Model {path} is a pickled {type(booster).__name__}, not an xgboost Booster",
                              hint="save model.get_booster() instead of the scikit-learn wrapper")
        booster.set_param("nthread", 1)
        boosters.append((booster, pickled))
    return boosters


def _predict_one(booster, dmatrix):
    best = getattr(booster, "best_ntree_limit", 0)  # set on boosters pickled by XGBoost < 2
    try:
        best = int(best) if best is not None else 0
    except (TypeError, ValueError):
        best = 0
    if best > 0:
        return booster.predict(dmatrix, iteration_range=(0, best), validate_features=False)
    return booster.predict(dmatrix, validate_features=False)


# selectable inference output (serve_utils.get_selected_predictions and its encoders) --------------------
def _selected(objective: str, keys: list[str], raw, num_class: str) -> dict:
    row = {}
    for key in keys:
        if key not in VALID_OBJECTIVES[objective]:
            row[key] = np.nan
        elif key == "predicted_score":
            row[key] = raw.item()
        elif key == "predicted_label":
            row[key] = (raw.item() if objective in (BINARY_HINGE, MULTI_SOFTMAX) else int(raw > 0.5)
                        if objective == BINARY_LOG else int(raw > 0) if objective == BINARY_LOGRAW
                        else np.argmax(raw).item())
        elif key == "labels":
            row[key] = [0, 1] if "binary:" in objective else list(range(int(num_class))) if num_class else np.nan
        elif key in ("probability", "raw_score") and objective == MULTI_SOFTPROB:
            row[key] = max(raw).item()
        elif key in ("probabilities", "raw_scores") and objective == MULTI_SOFTPROB:
            row[key] = raw.tolist()
        elif key in ("probability", "raw_score"):
            row[key] = raw.item()
        else:  # probabilities / raw_scores of a binary or softmax objective
            row[key] = [1.0 - raw.item(), raw.item()]
    return row


def _encode_selected(rows: list[dict], keys: list[str], accept: str) -> bytes:
    if accept == JSON:
        return json.dumps({"predictions": rows}).encode()
    if accept == JSONLINES:
        return b"".join((json.dumps(row) + "\n").encode() for row in rows)
    if accept == CSV:
        return "\n".join(",".join(f'"{row[k]}"' if isinstance(row[k], list) else str(row[k]) for k in keys)
                         for row in rows).encode()
    raise ContainerError(500, f"Cannot encode selected predictions into accept type '{accept}'.")


class XGBoostAlgorithm:
    """The algorithm-mode container for one model directory and image version (None: the newest)."""

    def __init__(self, model_dir: str, version: str | None = None):
        self.version = version
        self.boosters = load_boosters(model_dir, os.environ.get("SAGEMAKER_INFERENCE_ENSEMBLE", "true") == "true")
        config = json.loads(self.boosters[0][0].save_config())
        self.objective = config["learner"]["objective"]["name"]
        self.num_class = config["learner"]["learner_model_param"].get("num_class", "")

    def _from(self, version: str) -> bool:
        return self.version is None or version_key(self.version) >= version_key(version)

    def invoke(self, body: bytes, content_type: str | None, accept: str | None, context=None) -> tuple[bytes, str]:
        if not body:
            raise ContainerError(204, "", CSV)
        try:
            dmatrix, kind = parse_content(body, content_type, self._from)
        except Exception as exc:
            raise ContainerError(415, str(exc)) from None
        try:
            predictions = self._predict(dmatrix, kind)
        except Exception as exc:
            raise ContainerError(400, f"Unable to evaluate payload provided: {exc}") from None
        selectable = "SAGEMAKER_INFERENCE_OUTPUT" in os.environ
        if not self._from(ACCEPT_BY_HEADER_FROM) and not selectable:
            return ",".join(map(str, predictions.tolist())).encode(), CSV
        accept = self._accept(accept)
        if selectable:
            keys = os.environ["SAGEMAKER_INFERENCE_OUTPUT"].replace(" ", "").lower().split(",")
            if self.objective not in VALID_OBJECTIVES:
                raise ContainerError(500, f"Objective `{self.objective}` unsupported for selectable inference "
                                           "predictions.")
            rows = [_selected(self.objective, keys, raw, self.num_class) for raw in predictions]
            return _encode_selected(rows, keys, accept), accept
        values = predictions.tolist()
        if accept == JSON:
            return json.dumps({"predictions": [{"score": value} for value in values]}).encode(), accept
        if accept == CSV:  # sagemaker_containers' array_to_csv: one row per line
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(
                np.reshape(np.array(values), (len(values), 1)) if np.ndim(values) == 1 else values)
            return buffer.getvalue().encode(), accept
        raise ContainerError(500, f"UnsupportedFormatError: Content type {accept} is not supported by this "
                                   "framework. (The XGBoost container encodes it only with SAGEMAKER_INFERENCE_OUTPUT "
                                   "set; ask for text/csv or application/json.)")

    def _accept(self, accept: str | None) -> str:
        media = _media_type(accept)[0] if accept else ""
        if not media or media == "*/*":
            return os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", CSV)
        if media not in SUPPORTED_ACCEPTS:
            raise ContainerError(406, f"Accept type {accept} is not supported. Please use supported accept types: "
                                       f"{SUPPORTED_ACCEPTS}.")
        if media == RECORDIO:
            raise ContainerError(406, f"Accept type {media} is answered by the XGBoost container but not "
                                       "emulated locally: ask for text/csv, application/json or application/jsonlines")
        return media

    def _predict(self, dmatrix, kind: str):
        booster, pickled = self.boosters[0]
        if pickled:
            expected = booster.num_features()
            got = len(dmatrix.feature_names) if dmatrix.feature_names is not None else dmatrix.num_col()
            if kind == "libsvm" and got > expected + 1:
                raise ValueError(f"Feature size of libsvm inference data {got} is larger than feature size of "
                                 f"trained model {expected}.")
            if kind == "csv" and got not in (expected, expected - 1):
                raise ValueError(f"Feature size of {kind} inference data {got} is not consistent with feature size "
                                 f"of trained model {expected}.")
        if len(self.boosters) == 1:
            return _predict_one(booster, dmatrix)
        each = [_predict_one(b, dmatrix) for b, _ in self.boosters]
        if self.objective in (MULTI_SOFTMAX, BINARY_HINGE):  # the vote, as scipy.stats.mode(...).mode[0]
            stacked = np.stack(each)
            return np.array([np.bincount(column.astype(int)).argmax() for column in stacked.T], dtype=stacked.dtype)
        return np.mean(each, axis=0)
