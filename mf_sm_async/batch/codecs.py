"""Payload codecs for batch inference: the client side of ``mf_sm_async/serving/sklearn_inference.py``.

``encode_rows`` writes rows of a DataFrame as one payload the default handler decodes, and
``decode_output`` reads the handler's answer back as a DataFrame with one row per payload row.

Payload formats (every column of the frame is a model feature, the index is not sent):

- ``application/jsonlines`` (the default): one JSON list per row, values in column order. The handler maps
  list rows to the estimator's fitted feature names by width, so the columns must be in the fitted order.
- ``application/json``: one JSON list of such lists.
- ``text/csv``: numbers only (booleans as 1 and 0), no header.
- ``application/x-parquet``: the frame as a Parquet table, columns named by ``str(name)``; needs pyarrow.
- ``application/x-npy``: ``numpy.save`` of the frame's values, without pickle (numbers only).

Numbers are written so that the handler reads back the same values: floats in their shortest round-trip
form (at most 17 significant digits) and always with a ``.`` or an exponent, so ``2.0`` stays a float;
NaN and infinities as ``NaN``, ``Infinity`` and ``-Infinity`` (the tokens Python's json writes and reads;
strict parsers reject them). Strings are UTF-8, unescaped; datetimes and timedeltas are ISO 8601 strings (``"P0DT0H0M1S"``);
missing values in non-numeric columns are ``null``. Anything else is refused before any upload with a
``ConfigError`` naming the column and its dtype: complex numbers (no JSON, CSV or npy form), Python objects
that are not JSON values (sets, Decimal, your own classes), bytes, and strings that are not valid Unicode
(lone surrogates); CSV and npy take numbers and booleans only. A nullable integer or boolean column that holds missing values is
written as floats with NaN, which is what the handler makes of a null in a numeric row anyway.

Example::

    >>> import pandas as pd
    >>> encode_rows(pd.DataFrame({"x": [0.1, 2.0], "n": [1, 2], "label": ["a", None]}))
    b'[0.1,1,"a"]\\n[2.0,2,null]\\n'
    >>> decode_output(b'[0.25, 0.75]', "application/json", rows=2)
       prediction
    0        0.25
    1        0.75
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import json
import math
import numbers
import os

import numpy as np
import pandas as pd

from ..errors import ConfigError

try:  # the fast text encoder and Parquet need pyarrow; without it, text payloads are built in Python
    import pyarrow as _pa
    import pyarrow.compute as _pc
except ImportError:  # pragma: no cover - pyarrow is installed wherever the tests run
    _pa = _pc = None

JSONLINES = "application/jsonlines"
JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/x-parquet"
NPY = "application/x-npy"
CONTENT_TYPES = (JSONLINES, JSON, CSV, PARQUET, NPY)

_ALIASES = {"application/x-jsonlines": JSONLINES}  # the handler accepts both spellings
_EXTENSIONS = {JSONLINES: ".jsonl", JSON: ".json", CSV: ".csv", PARQUET: ".parquet", NPY: ".npy"}
_NUMERIC_KINDS = ("float", "int", "uint", "bool")
# Values per Arrow call: its float-to-text cast runs about twice as fast on a slice that stays in the CPU
# cache as on a whole million-row frame.
_CHUNK_VALUES = 1 << 15
_CHUNKS_PER_THREAD = 4
# The handler splits JSON Lines with str.splitlines(), which also breaks at these characters; json leaves
# them raw inside strings, so escape them or a row whose text holds one would arrive as two.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_JSON_ALLOWED = ("JSON values: numbers, strings (valid Unicode), booleans, None, datetimes, timedeltas, lists and "
                 "dicts of them")
_CSV_MISSING = ["nan", "NaN"]  # what the handler's csv writer makes of NaN; "NA" or "None" stay labels


class OutputShapeError(ValueError):
    """The model's answer cannot be read as exactly one row per payload row."""


def check_content_type(value: object, field: str = "content_type") -> str:
    """Return the content type without parameters, lower-cased; ConfigError if it is not supported.

    >>> check_content_type("Text/CSV; charset=utf-8")
    'text/csv'
    """
    if isinstance(value, str):
        media = _media_type(value)
        media = _ALIASES.get(media, media)
        if media in CONTENT_TYPES:
            return media
    raise ConfigError(field, value, "one of " + ", ".join(CONTENT_TYPES))


def payload_extension(content_type: str) -> str:
    """The file extension for a payload of this content type, for S3 keys.

    >>> payload_extension("application/jsonlines")
    '.jsonl'
    """
    return _EXTENSIONS[check_content_type(content_type)]


def encode_rows(frame: pd.DataFrame, content_type: str = JSONLINES) -> bytes:
    """One payload holding every row of ``frame``, whose columns are all model features.

    >>> import pandas as pd
    >>> encode_rows(pd.DataFrame({"a": [1.5, float("nan")], "b": [True, False]}), "text/csv")
    b'1.5,1\\nNaN,0\\n'
    """
    media = check_content_type(content_type)
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError("frame", type(frame).__name__, "a pandas DataFrame")
    if media == PARQUET:
        return _parquet_payload(frame)
    blocks = _blocks(frame, media)
    if media == NPY:
        return _npy_payload(frame.shape, blocks)
    # One text column goes as bare values ("a"\n, not ["a"]\n): the handler then hands the estimator a 1-D
    # array of strings, which is what a text pipeline (TfidfVectorizer first) was fitted on.
    bare = media != CSV and frame.shape[1] == 1 and not pd.api.types.is_numeric_dtype(frame.dtypes.iloc[0])
    chunks = _text_rows(frame.shape, blocks, media, bare)
    if media != JSON:
        return b"".join(chunks)
    if chunks:
        chunks[-1] = memoryview(chunks[-1])[:-1]  # the comma after the last row
    return b"".join([b"[", *chunks, b"]"])


def check_frame(frame: pd.DataFrame, content_type: str = JSONLINES) -> None:
    """Raise the ConfigError :func:`encode_rows` would raise for some part of ``frame``, naming the column and
    its dtype, before a run writes or uploads anything. Numeric, datetime and timedelta columns cost nothing;
    other columns' values are looked at once (their strings in one UTF-8 encode per column).

    >>> import pandas as pd
    >>> try:
    ...     check_frame(pd.DataFrame({"z": [1j]}))
    ... except ConfigError as error:
    ...     print(error.field, error.value)
    frame['z'].dtype complex128
    """
    media = check_content_type(content_type)
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError("frame", type(frame).__name__, "a pandas DataFrame")
    if media == PARQUET:
        pa, _ = _parquet_modules()
        try:
            pa.Table.from_pandas(frame.set_axis([str(n) for n in frame.columns], axis=1), preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError):
            _parquet_payload(frame)  # raises, naming the column
        return
    for position, (name, dtype) in enumerate(frame.dtypes.items()):
        if _kind(dtype) != "object" or (dtype.kind in "iufb" and not isinstance(dtype, np.dtype)):
            continue  # numbers, and pandas' nullable numbers
        column = frame.iloc[:, [position]]
        if media in (CSV, NPY):
            _blocks(column.iloc[:1], media)  # raises, naming the column and its dtype
        if dtype.kind == "c":
            raise ConfigError(f"frame[{name!r}].dtype", str(dtype), _JSON_ALLOWED,
                              hint="complex numbers have no JSON form: send the real and imaginary parts as two "
                                   "columns")
        if dtype.kind in "mM":
            continue  # datetimes and timedeltas always have an ISO 8601 form
        values = column.iloc[:, 0].dropna().astype(object).tolist()
        suspects = [v for v in values if type(v) not in (str, int, float, bool)]
        try:
            "".join(v for v in values if type(v) is str).encode("utf-8")
        except UnicodeEncodeError:
            suspects += [v for v in values if type(v) is str and not _encodes(v)][:1]
        if suspects:
            try:
                _object_tokens(pd.DataFrame({0: pd.Series(suspects, dtype=object)}))
            except ConfigError as error:
                raise ConfigError(f"frame[{name!r}].dtype", str(dtype), error.allowed, hint=error.hint) from None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def decode_output(body: bytes, content_type: str, rows: int) -> pd.DataFrame:
    """The model's answer to a payload of ``rows`` rows, as a DataFrame with a RangeIndex of ``rows``.

    1-D answers become one column ``prediction``; 2-D answers (``predict_proba``) columns ``0 .. k-1``;
    JSON objects columns named by their keys. ``{"predictions": [...]}`` is read as its list. Raises
    OutputShapeError when the answer cannot be read or does not hold exactly ``rows`` rows.

    >>> decode_output(b'[0.1, 0.9]\\n[0.8, 0.2]\\n', "application/jsonlines", rows=2)
         0    1
    0  0.1  0.9
    1  0.8  0.2
    """
    media = _media_type(content_type)
    media = _ALIASES.get(media, media)
    data = bytes(body)
    if media == NPY:
        frame = _npy_frame(data)
    elif media == PARQUET:
        frame = _parquet_frame(data)
    elif media == CSV:
        frame = _csv_frame(data)
    elif media == JSONLINES:
        frame = _rows_frame(_json_lines(data, media), rows)
    elif _is_json(media):
        frame = _document_frame(_json_document(data, media), rows)
    else:
        try:  # many servers answer JSON under a generic type such as application/octet-stream
            document = _json_document(data, media)
        except OutputShapeError:
            raise OutputShapeError(f"cannot decode the model's answer of content type {content_type!r}: it is "
                                   f"not JSON, and the codecs read {', '.join(CONTENT_TYPES)}") from None
        frame = _document_frame(document, rows)
    _check_rows(len(frame), rows)
    return frame.reset_index(drop=True)


def decode_single(body: bytes, content_type: str):
    """The answer to a one-row payload: JSON as its parsed value, other text as str, anything else bytes.

    >>> decode_single(b'{"label": "cat"}', "application/json; charset=utf-8")
    {'label': 'cat'}
    >>> decode_single(b"cat", "text/plain")
    'cat'
    """
    media = _media_type(content_type)
    media = _ALIASES.get(media, media)
    data = bytes(body)
    if media == JSONLINES:
        values = _json_lines(data, media)
        return values[0] if len(values) == 1 else values
    if _is_json(media):
        return _json_document(data, media)
    if media.startswith("text/"):
        return _text(data, media)
    return data


# ----------------------------------------------------------------------------------------------- encoding


def _blocks(frame: pd.DataFrame, media: str) -> list[tuple[list[int], str, np.ndarray]]:
    """Columns grouped by how they are written: ``(positions, kind, 2-D values)``, one entry per kind.

    Grouping lets a million-row frame of 64 float columns go through a handful of vectorised calls
    instead of one per column.
    """
    kinds = collections.defaultdict(list)
    nullable = set()
    for position, (name, dtype) in enumerate(frame.dtypes.items()):
        kind = _kind(dtype)
        if kind not in _NUMERIC_KINDS and dtype.kind in "iufb":  # pandas' nullable Int64, Float64, boolean
            has_missing = bool(frame.iloc[:, position].isna().any())
            kind = "float" if has_missing else {"i": "int", "u": "uint", "b": "bool", "f": "float"}[dtype.kind]
            nullable.add(kind)
        if kind == "object" and media in (CSV, NPY):
            raise ConfigError(f"frame[{name!r}].dtype", str(dtype), f"a numeric or boolean dtype for {media}",
                              hint="convert the column, e.g. frame[col].astype(float), "
                                   f"or send {JSONLINES}, which also carries strings")
        kinds[kind].append(position)
    blocks = []
    for kind, positions in kinds.items():
        columns = frame if len(positions) == frame.shape[1] else frame.iloc[:, positions]
        if kind == "object":
            values = _object_tokens(columns)
        elif kind == "float" and kind in nullable:
            values = columns.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = columns.to_numpy(dtype={"float": np.float64, "int": np.int64, "uint": np.uint64,
                                             "bool": np.bool_}[kind])
        blocks.append((positions, kind, values))
    return blocks


def _kind(dtype) -> str:
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
        # float16 and float32 are written as the float64 of the same value: exact, and what sklearn computes on
        return {"f": "float", "i": "int", "u": "uint", "b": "bool"}[dtype.kind]
    return "object"


def _object_tokens(columns: pd.DataFrame) -> np.ndarray:
    """Each value of non-numeric columns as its JSON text; a 2-D object array of str."""
    tokens = np.empty(columns.shape, dtype=object)
    for position, (name, column) in enumerate(columns.items()):
        missing = column.isna().to_numpy()
        values = column.astype(object).tolist()
        try:
            texts = ["null" if gone else _dumps(value) for value, gone in zip(values, missing)]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"frame[{name!r}].dtype", str(column.dtype), _JSON_ALLOWED,
                              hint=f"{exc}; convert the column first") from None
        tokens[:, position] = texts
    return tokens


def _dumps(value) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    if not text.isascii():
        for char, escaped in _LINE_BREAKS.items():
            text = text.replace(char, escaped)
        try:  # a lone surrogate (bytes decoded with errors="surrogateescape") has no UTF-8 form
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{value!r} is not valid Unicode text ({exc.reason}): decode the source bytes with "
                             "their real encoding") from None
    return text


def _json_default(value):
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.datetime64, np.timedelta64)):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
    if hasattr(value, "isoformat"):  # datetime, date, time, pandas Timestamp and Timedelta
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):  # Decimal is not one: its exact text would need a string
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _text_rows(shape: tuple[int, int], blocks, media: str, bare: bool = False) -> list:
    """The text of every row, in buffers to concatenate: ``[a,b]\\n`` for JSON Lines, ``[a,b],`` for JSON,
    ``a,b\\n`` for CSV; ``bare`` drops the brackets."""
    rows, columns = shape
    prefix, suffix = {CSV: ("", "\n"), JSON: ("[", "],")}.get(media, ("[", "]\n"))
    if bare:
        prefix, suffix = "", suffix[1:]
    if _pa is None:
        tokens = np.empty((rows, columns), dtype=object)
        for positions, kind, values in blocks:
            tokens[:, positions] = _python_tokens(kind, values, media)
        return ["".join(prefix + ",".join(row) + suffix for row in tokens.tolist()).encode("utf-8")]
    step = max(1, _CHUNK_VALUES // max(columns, 1))
    starts = range(0, rows, step)

    def lines(start: int):
        stop = min(start + step, rows)
        tokens = _arrow_row_major(blocks, start, stop, columns, media)
        offsets = _pa.array(np.arange(stop - start + 1, dtype=np.int32) * columns)
        joined = _pc.binary_join(_pa.ListArray.from_arrays(offsets, tokens), ",")
        return _string_bytes(_pc.binary_join_element_wise(prefix, joined, suffix, ""))

    # Arrow and numpy release the GIL, so threads share out a big frame; a payload-sized one stays on one
    # thread, where starting threads would cost more than they save.
    workers = min(_cpu_count(), len(starts) // _CHUNKS_PER_THREAD)
    if workers < 2:
        return [lines(start) for start in starts]
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="encode-rows") as pool:
        return list(pool.map(lines, starts))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use, which a container limits
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _arrow_row_major(blocks, start: int, stop: int, columns: int, media: str):
    """The tokens of rows ``start:stop`` as one Arrow string array, row by row, columns in frame order."""
    arrays = [_arrow_tokens(kind, values[start:stop].ravel(), media) for _, kind, values in blocks]
    if len(arrays) == 1:
        return arrays[0]
    if not arrays:
        return _pa.array([], _pa.string())
    rows = stop - start
    order = np.empty((rows, columns), dtype=np.int64)
    base = 0
    for (positions, _, _), tokens in zip(blocks, arrays):
        width = len(positions)
        order[:, positions] = base + np.arange(rows)[:, None] * width + np.arange(width)
        base += len(tokens)
    return _pc.take(_pa.concat_arrays(arrays), _pa.array(order.ravel()))


def _arrow_tokens(kind: str, values: np.ndarray, media: str):
    if kind == "object":
        return _pa.array(values, _pa.string())
    if kind == "bool" and media == CSV:
        values = values.astype(np.uint8)
    tokens = _pc.cast(_pa.array(values), _pa.string())  # ints exact; bools true/false
    if kind != "float":
        return tokens
    # Arrow writes floats in shortest round-trip form, but as nan, inf and -inf, and integral values
    # without a point: "2" would come back as an int, and "-0" as 0, losing the sign.
    finite = np.isfinite(values)
    if not finite.all():
        tokens = _pc.replace_substring(_pc.replace_substring(tokens, "inf", "Infinity"), "nan", "NaN")
    integral = finite & (values == np.trunc(values))
    if integral.any():
        bare = _pc.and_(_pa.array(integral), _pc.invert(_pc.match_substring(tokens, "e")))
        tokens = _pc.if_else(bare, _pc.binary_join_element_wise(tokens, ".0", ""), tokens)
    return tokens


def _string_bytes(array):
    """The concatenated values of an Arrow string array, as a buffer ``bytes.join`` copies only once."""
    _, offsets, data = array.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[array.offset:array.offset + len(array) + 1]
    return b"" if data is None else data[int(bounds[0]):int(bounds[-1])]


def _python_tokens(kind: str, values: np.ndarray, media: str) -> np.ndarray:
    """``_arrow_tokens`` without pyarrow: slower, same text up to the spelling of floats."""
    if kind == "object":
        return values
    if kind == "float":
        texts = [[_float_text(value) for value in row] for row in values.tolist()]
    elif kind == "bool":
        true, false = ("1", "0") if media == CSV else ("true", "false")
        texts = [[true if value else false for value in row] for row in values.tolist()]
    else:
        texts = [[str(value) for value in row] for row in values.tolist()]
    array = np.empty(values.shape, dtype=object)
    array[...] = texts
    return array


def _float_text(value: float) -> str:
    if math.isfinite(value):
        return repr(value)  # shortest round-trip form, always with a point or an exponent
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _npy_payload(shape: tuple[int, int], blocks) -> bytes:
    array = np.empty(shape, dtype=np.result_type(*[values.dtype for _, _, values in blocks]) if blocks else float)
    for positions, _, values in blocks:
        array[:, positions] = values
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)  # the handler refuses pickles: payloads are untrusted
    return buffer.getvalue()


def _parquet_payload(frame: pd.DataFrame) -> bytes:
    pa, pq = _parquet_modules()
    names = [str(name) for name in frame.columns]
    repeated = sorted(name for name, count in collections.Counter(names).items() if count > 1)
    if repeated:
        raise ConfigError("frame.columns", repeated, f"distinct names (as str) for {PARQUET}")
    try:
        table = pa.Table.from_pandas(frame.set_axis(names, axis=1), preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        for name, column in frame.items():  # name the column pyarrow cannot store
            try:
                pa.Table.from_pandas(column.to_frame(str(name)), preserve_index=False)
            except (pa.ArrowException, TypeError, ValueError) as column_error:
                raise ConfigError(f"frame[{name!r}].dtype", str(column.dtype), f"a dtype pyarrow can store for {PARQUET}",
                                  hint=f"pyarrow: {column_error}; convert the column first") from None
        raise ConfigError("content_type", PARQUET, f"{JSONLINES} for frames pyarrow cannot store",
                          hint=f"pyarrow: {exc}") from None
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _parquet_modules():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigError("content_type", PARQUET, "one of " + ", ".join(t for t in CONTENT_TYPES if t != PARQUET),
                          hint="Parquet needs pyarrow: pip install pyarrow") from None
    return pyarrow, pyarrow.parquet


# ----------------------------------------------------------------------------------------------- decoding


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == JSON or media.endswith("+json")


def _check_rows(got: int, rows: int) -> None:
    if got != rows:
        raise OutputShapeError(f"the model returned {got} rows for a payload of {rows} rows")


def _text(data: bytes, media: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OutputShapeError(f"the model's {media or 'untyped'} answer is not UTF-8 text: {exc}") from None


def _json_document(data: bytes, media: str):
    try:
        return json.loads(_text(data, media))
    except ValueError as exc:
        raise OutputShapeError(f"the model's {media or 'untyped'} answer is not JSON: {exc}") from None


def _json_lines(data: bytes, media: str) -> list:
    text = _text(data, media).strip()
    if not text:
        return []
    try:  # one parse of the whole answer; most answers are one short value per line
        values = json.loads("[" + text.replace("\n", ",") + "]")
        if len(values) == text.count("\n") + 1:
            return values
    except ValueError:
        pass
    values = []  # blank lines, or a line that is not one JSON value: find it and say which
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except ValueError as exc:
                raise OutputShapeError(f"line {number} of the model's {media} answer is not one JSON value: "
                                       f"{exc}") from None
    return values


def _document_frame(document, rows: int) -> pd.DataFrame:
    if isinstance(document, dict) and isinstance(document.get("predictions"), list):
        document = document["predictions"]  # TensorFlow Serving and others wrap the rows
    if isinstance(document, list):
        return _rows_frame(document, rows)
    if isinstance(document, dict):
        lists = [isinstance(value, list) for value in document.values()]
        if document and all(lists) and len({len(value) for value in document.values()}) == 1:
            _check_rows(len(next(iter(document.values()))), rows)
            return pd.DataFrame(document)  # column -> values
        if not any(lists):
            return _rows_frame([document], rows)  # one object is one row, as the handler reads it
    raise OutputShapeError(f"expected a JSON list with one entry per row, got {json.dumps(document)[:80]}")


def _rows_frame(values: list, rows: int) -> pd.DataFrame:
    _check_rows(len(values), rows)
    if values and all(isinstance(value, dict) for value in values):
        return pd.DataFrame.from_records(values)
    if values and all(isinstance(value, list) for value in values) and len({len(v) for v in values}) == 1:
        return pd.DataFrame(values)  # predict_proba and friends: columns 0 .. k-1
    return pd.DataFrame({"prediction": pd.Series(values, dtype=object if _nested(values) else None)})


def _nested(values: list) -> bool:
    # Ragged lists and mixed values stay one Python object per row rather than being spread or coerced.
    return any(isinstance(value, (list, dict)) for value in values)


def _csv_frame(data: bytes) -> pd.DataFrame:
    if not data.strip():
        return pd.DataFrame({"prediction": []})
    try:
        frame = pd.read_csv(io.BytesIO(data), header=None, keep_default_na=False, na_values=_CSV_MISSING,
                            encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise OutputShapeError(f"the model's {CSV} answer cannot be read as rows: {exc}") from None
    return frame.set_axis(["prediction"], axis=1) if frame.shape[1] == 1 else frame


def _npy_frame(data: bytes) -> pd.DataFrame:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise OutputShapeError(f"the model's {NPY} answer is not a .npy array: {exc}") from None
    return _array_frame(array)


def _array_frame(array: np.ndarray) -> pd.DataFrame:
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim == 1:
        return pd.DataFrame({"prediction": array})
    return pd.DataFrame(array.reshape(len(array), -1))


def _parquet_frame(data: bytes) -> pd.DataFrame:
    pa, pq = _parquet_modules()
    try:
        frame = pq.read_table(pa.BufferReader(data)).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise OutputShapeError(f"the model's {PARQUET} answer cannot be read: {exc}") from None
    names = [str(name) for name in frame.columns]
    if names == [str(i) for i in range(len(names))]:  # a 2-D answer: Parquet names columns with strings
        frame.columns = range(len(names))
    return frame
