"""Default SageMaker handler for a scikit-learn-style estimator saved as ``model.joblib``.

``package_estimator`` writes this file into model.tar.gz as ``code/inference.py``. It runs unchanged in
the local emulator and on AWS's scikit-learn framework image, so it imports only the standard library,
numpy and joblib, pandas only when rows arrive as dicts (or must carry the fitted column names), and
pyarrow only for Parquet (AWS's image may lack it: add ``pyarrow`` to the model's requirements).

Inputs, by Content-Type (parameters such as ``; charset=utf-8`` are ignored):

- ``application/json``: a list of rows, each a list of values or a dict column -> value;
  ``{"instances": [...]}``; or one dict column -> list of values (one dict column -> value is one row).
  A flat list of values is one value per row (a text pipeline's strings, or a one-feature model).
- ``application/jsonlines``, ``application/x-jsonlines``: one row per line, a list or a dict.
- ``text/csv``: rows of numbers, no header.
- ``application/x-npy``: an array written by ``numpy.save`` (no pickled objects: payloads are untrusted).
- ``application/x-parquet``: a Parquet table, one column per feature, read as a pandas DataFrame.

Dict rows (and Parquet tables) become a pandas DataFrame whose columns follow the estimator's
``feature_names_in_``; list rows of the right width get those column names too. Missing columns are an
error; extra ones are dropped.

The method is ``predict`` unless the ``X-Amzn-SageMaker-Custom-Attributes`` header holds
``method=<name>`` in a ``key=value`` list separated by ``,`` or ``;``; ``<name>`` is one of ``METHODS``.

Outputs, by Accept, always one entry per input row:

- ``application/json``: a JSON list; 2-D results (``predict_proba``) as lists of lists.
- ``application/jsonlines``, ``application/x-jsonlines``: one JSON value per line, newline-terminated.
- ``text/csv``: one line per row, comma-separated for 2-D results, floats in round-trip precision.
- ``application/x-npy``: ``numpy.save`` of the result (string labels as a unicode array).
- ``application/x-parquet``: a Parquet table; 1-D results as the column ``prediction``, 2-D results as
  columns ``"0"`` .. ``"k-1"`` (Parquet column names are strings).

NaN and infinities are written as the tokens ``NaN``, ``Infinity``, ``-Infinity`` (Python's json
default), not as ``null``: Python's ``json.loads`` and pandas read them back as the same floats, which is
what a Python client wants; strict parsers such as JavaScript's ``JSON.parse`` reject them. Strings are
written as UTF-8 without escaping.

Example::

    >>> class Doubler:
    ...     def predict(self, X):
    ...         return X.sum(axis=1) * 2
    >>> rows = input_fn('[[1, 2], [3, 4]]', "application/json")
    >>> output_fn(predict_fn(rows, Doubler()), "application/json")
    (b'[6.0, 14.0]', 'application/json')
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys

import numpy as np

MODEL_FILENAME = "model.joblib"
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
JSON, CSV, NPY, PARQUET = "application/json", "text/csv", "application/x-npy", "application/x-parquet"
JSONLINES = ("application/jsonlines", "application/x-jsonlines")
CONTENT_TYPES = (JSON, *JSONLINES, CSV, NPY, PARQUET)


def model_fn(model_dir):
    """Load the estimator that ``package_estimator`` saved."""
    import joblib

    return joblib.load(os.path.join(model_dir, MODEL_FILENAME))


def input_fn(input_data, content_type, context=None):
    """Decode a payload (``str`` or ``bytes``) into rows: a numpy array or a pandas DataFrame."""
    media = _media_type(content_type) or JSON
    if media == NPY:
        return np.load(io.BytesIO(input_data), allow_pickle=False)
    if media == PARQUET:
        frame = _pyarrow()[1].read_table(io.BytesIO(_bytes(input_data))).to_pandas()
        if not len(frame):
            raise ValueError("the payload has no rows")
        return frame
    if media not in CONTENT_TYPES:
        raise ValueError(f"unsupported content type {content_type!r}: send one of {', '.join(CONTENT_TYPES)}")
    text = input_data if isinstance(input_data, str) else bytes(input_data).decode("utf-8-sig")
    if media == CSV:
        return _csv_rows(text)
    if media == JSON:
        doc = json.loads(text)
        if isinstance(doc, dict) and set(doc) == {"instances"}:
            doc = doc["instances"]
        if isinstance(doc, dict):
            return _columns(doc)
        if not isinstance(doc, list):
            raise ValueError(f"a JSON payload must be a list of rows, {{\"instances\": [...]}} or an object; got {doc!r:.60}")
        return _rows(doc)
    return _rows([json.loads(line) for line in text.splitlines() if line.strip()])


def predict_fn(data, model, context=None):
    """Call the estimator's method chosen by the custom attributes; one result row per input row."""
    method = _method(_custom_attributes(context))
    fn = getattr(model, method, None)
    if fn is None:
        raise ValueError(f"method={method!r}: {type(model).__name__} has no {method}()")
    features = _align(data, model)
    result = _as_array(fn(features))
    if result.ndim == 0 or len(result) != len(features):
        got = 1 if result.ndim == 0 else len(result)
        raise ValueError(f"{type(model).__name__}.{method} returned {got} rows for {len(features)} input rows")
    return result


def output_fn(prediction, accept, context=None):
    """Encode the prediction as ``accept`` asks; returns ``(body, content_type)``."""
    media = _media_type(accept)
    media = JSON if media in ("", "*/*") else media
    array = _as_array(prediction)
    if media == JSON:
        return _dumps(array.tolist()).encode("utf-8"), media
    if media in JSONLINES:
        return "".join(_dumps(row) + "\n" for row in array.tolist()).encode("utf-8"), media
    if media == CSV:
        buffer = io.StringIO()
        rows = [[v] for v in array.tolist()] if array.ndim == 1 else array.reshape(len(array), -1).tolist()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue().encode("utf-8"), media
    if media == NPY:
        buffer = io.BytesIO()
        np.save(buffer, _without_objects(array), allow_pickle=False)
        return buffer.getvalue(), media
    if media == PARQUET:
        pa, parquet = _pyarrow()
        columns = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(-1, 1)
        names = [str(i) for i in range(columns.shape[1])] if array.ndim > 1 else ["prediction"]
        buffer = io.BytesIO()
        parquet.write_table(pa.table({name: pa.array(columns[:, i]) for i, name in enumerate(names)}), buffer)
        return buffer.getvalue(), media
    raise ValueError(f"unsupported accept type {accept!r}: ask for one of {', '.join(CONTENT_TYPES)}")


def _media_type(value):
    return (value or "").split(";", 1)[0].strip().lower()


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ValueError("application/x-parquet needs pyarrow in the model image: add pyarrow to the model's "
                         "requirements, or use another content type") from None
    return pyarrow, pyarrow.parquet


def _bytes(data):
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _csv_rows(text):
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the text/csv payload has no rows")
    try:
        return np.loadtxt(lines, delimiter=",", dtype=float, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"a text/csv payload must be rows of numbers without a header: {exc}") from exc


def _columns(doc):
    """One JSON object: column -> list of values, or column -> value for a single row."""
    lists = [isinstance(v, list) for v in doc.values()]
    if not any(lists):
        return _rows([doc])
    if not all(lists):
        raise ValueError("a JSON object payload must map every column to a list of values (or none of them)")
    import pandas as pd

    return pd.DataFrame(doc)


def _rows(rows):
    if not rows:
        raise ValueError("the payload has no rows")
    dicts = [isinstance(row, dict) for row in rows]
    if all(dicts):
        import pandas as pd

        return pd.DataFrame.from_records(rows)
    if any(dicts):
        raise ValueError("rows must be all lists or all objects, not a mix")
    widths = {len(row) for row in rows if isinstance(row, list)}
    if len(widths) > 1:
        raise ValueError(f"rows have different lengths {sorted(widths)}; every row needs the same number of values")
    try:
        return np.asarray(rows, dtype=float)
    except (TypeError, ValueError):  # strings or mixed values: leave them to the estimator's own checks
        return np.asarray(rows, dtype=object)


def _align(data, model):
    """Give the estimator its fitted column names and order, and 2-D input where it needs one feature."""
    names = getattr(model, "feature_names_in_", None)
    if not hasattr(data, "ndim"):  # a list from a caller's own input_fn
        data = np.asarray(data)
    if hasattr(data, "columns"):
        if names is None:
            return data
        missing = [name for name in names if name not in data.columns]
        if missing:
            raise ValueError(f"rows lack column(s) {missing}; {type(model).__name__} was fitted on {list(names)}")
        return data[list(names)]
    if data.ndim == 1 and getattr(model, "n_features_in_", None) == 1:
        data = data.reshape(-1, 1)
    if names is not None and data.ndim == 2 and data.shape[1] == len(names):
        import pandas as pd

        frame = pd.DataFrame(data, columns=list(names))
        return frame.infer_objects() if data.dtype == object else frame
    return data


def _custom_attributes(context):
    if context is not None:
        return getattr(context, "custom_attributes", None)
    # AWS's scikit-learn image calls predict_fn(data, model) without a context; its server is Flask,
    # whose request-local proxy still carries the header. The emulator's copy of that container keeps the
    # headers in a request-local of its own. Best effort: never import either ourselves.
    emulated = sys.modules.get("mf_sm_async.serving.framework_container")
    headers = emulated.current_headers() if emulated is not None else None
    if headers is not None:
        return next((v for k, v in headers.items() if k.lower() == CUSTOM_ATTRIBUTES_HEADER.lower()), None)
    flask = sys.modules.get("flask")
    if flask is None:
        return None
    try:
        return flask.request.headers.get(CUSTOM_ATTRIBUTES_HEADER)
    except Exception:  # outside a request, or a server that is not Flask
        return None


def _method(custom_attributes):
    for part in re.split(r"[;,]", custom_attributes or ""):
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() == "method":
            method = value.strip()
            if method not in METHODS:
                raise ValueError(f"custom attribute method={method!r} is not supported: allowed {', '.join(METHODS)}")
            return method
    return "predict"


def _as_array(result):
    if hasattr(result, "toarray"):  # scipy sparse, e.g. from transform
        result = result.toarray()
    elif hasattr(result, "to_numpy"):  # pandas, e.g. set_output(transform="pandas")
        result = result.to_numpy()
    return np.asarray(result)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(value):
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _without_objects(array):
    """npy without pickle cannot hold Python objects: strings become a unicode array, the rest floats."""
    if array.dtype != object:
        return array
    if all(isinstance(v, str) for v in array.ravel().tolist()):
        return array.astype(str)
    return array.astype(float)
