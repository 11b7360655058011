"""Payload codecs, checked against the real default handler: encode_rows -> input_fn -> a toy estimator ->
output_fn -> decode_output must give back what the estimator saw and answered."""

from __future__ import annotations

import doctest
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mf_sm_async import ConfigError
from mf_sm_async.batch import codecs
from mf_sm_async.batch.codecs import CONTENT_TYPES, CSV, JSON, JSONLINES, NPY, PARQUET, OutputShapeError
from mf_sm_async.serving import sklearn_inference as handler

TEXT_TYPES = [JSONLINES, JSON, CSV]
LABELS_AND_SCORES = {"label": ["cat", "dog"], "score": [0.9, 0.6]}


class Echo:
    """Answers with the rows it was given, so the answer shows exactly what the handler decoded."""

    def predict(self, X):
        return X


def invoke(frame, content_type, model=None, accept=None, custom_attributes=None):
    """What the engine and the model server do with one payload; returns the decoded answer."""
    body = codecs.encode_rows(frame, content_type)
    if content_type in (JSON, CSV):  # the model server hands these to input_fn as str, the rest as bytes
        body = body.decode("utf-8")
    context = SimpleNamespace(custom_attributes=custom_attributes, request_headers={})
    data = handler.input_fn(body, content_type, context)
    answer, answer_type = handler.output_fn(handler.predict_fn(data, model or Echo(), context),
                                            accept or content_type, context)
    return codecs.decode_output(answer, answer_type, rows=len(frame))


def tricky_floats(count=400, seed=0):
    """Finite floats of every magnitude (random bit patterns, subnormals included) and the special values."""
    bits = np.random.default_rng(seed).integers(0, 2**64, count, dtype=np.uint64, endpoint=False)
    values = bits.view(np.float64)
    values = values[np.isfinite(values)]
    special = [0.1, 1 / 3, 2.0, -0.0, 0.0, 1e16, 1e-7, 123456789012.0, 2.0**53 + 2, 5e-324, 2.2250738585072014e-308,
               1.7976931348623157e308, -1.5, math.nan, math.inf, -math.inf]
    return np.concatenate([special, values])


def assert_same_floats(actual, expected):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    np.testing.assert_array_equal(actual, expected)  # NaN matches NaN; every other value bit for bit
    np.testing.assert_array_equal(np.signbit(actual), np.signbit(expected))  # -0.0 stays -0.0


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_floats_round_trip_exactly_through_the_handler(content_type):
    values = tricky_floats()
    singles = np.random.default_rng(1).standard_normal(len(values)).astype(np.float32)  # written as their float64
    frame = pd.DataFrame({"x": values, "y": values[::-1].copy(), "f32": singles},
                         index=[f"row{i % 7}" for i in range(len(values))])  # any index: it is not sent
    answer = invoke(frame, content_type)
    assert answer.index.equals(pd.RangeIndex(len(frame)))
    assert list(answer.columns) == [0, 1, 2]
    for column, name in enumerate(frame.columns):
        assert_same_floats(answer[column], frame[name].astype(np.float64))


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_wide_rows_of_2000_columns_round_trip(content_type):
    frame = pd.DataFrame(np.random.default_rng(1).standard_normal((20, 2000)) * 1e3)
    answer = invoke(frame, content_type)
    assert answer.shape == (20, 2000)
    assert_same_floats(answer.to_numpy(), frame.to_numpy())


@pytest.mark.parametrize("content_type", [JSONLINES, JSON])
def test_ints_bools_none_and_strings_reach_the_model_as_themselves(content_type):
    frame = pd.DataFrame({
        "name": ["ça va", "日本語", "😀, \"quoted\"", "tab\tand\nnewline", "break\u2028here\x85too"],
        "big": [2**62 + 1, -3, 0, 7, 2**53 + 1],  # exact only if written as ints
        "flag": [True, False, True, False, True],
        "maybe": [None, "x", None, "y", "z"],
        "score": [0.1, 2.0, math.nan, -math.inf, 1e-300],
    })
    answer = invoke(frame, content_type)
    assert len(answer) == len(frame)  # no row split at a line break inside a string
    assert answer[0].tolist() == frame["name"].tolist()
    assert answer[1].tolist() == [2**62 + 1, -3, 0, 7, 2**53 + 1]
    assert answer[2].tolist() == [True, False, True, False, True]
    assert answer[3].isna().tolist() == [True, False, True, False, False]
    assert_same_floats(answer[4], frame["score"])


def test_json_payloads_are_utf8_lists_in_column_order():
    frame = pd.DataFrame({"b": [1.5, 2.0], "a": ["ça", None], "when": pd.to_datetime(["2024-01-02T03:04:05", None])})
    lines = codecs.encode_rows(frame, JSONLINES)
    assert "ça".encode() in lines  # UTF-8, not \u escapes
    assert [json.loads(line) for line in lines.splitlines()] == [[1.5, "ça", "2024-01-02T03:04:05"], [2.0, None, None]]
    assert json.loads(codecs.encode_rows(frame, JSON)) == [[1.5, "ça", "2024-01-02T03:04:05"], [2.0, None, None]]


def test_float_text_says_float_and_int_text_says_int():
    frame = pd.DataFrame({"f": [2.0, -0.0, 1e22], "i": np.array([2, 0, 10], dtype=np.int8), "b": [True, False, True]})
    rows = [json.loads(line) for line in codecs.encode_rows(frame, JSONLINES).splitlines()]
    assert [[type(value) for value in row] for row in rows] == [[float, int, bool]] * 3
    assert math.copysign(1, rows[1][0]) == -1


def test_nullable_columns_with_missing_values_become_nan():
    frame = pd.DataFrame({"n": pd.array([1, None], dtype="Int64"), "whole": pd.array([1, 2], dtype="Int64")})
    assert codecs.encode_rows(frame, JSONLINES) == b"[1.0,1]\n[NaN,2]\n"
    answer = invoke(frame, CSV)
    assert_same_floats(answer.to_numpy(), [[1.0, 1.0], [math.nan, 2.0]])


def test_csv_writes_booleans_as_numbers():
    frame = pd.DataFrame({"flag": [True, False], "x": [0.5, math.inf]})
    assert codecs.encode_rows(frame, CSV) == b"1,0.5\n0,Infinity\n"


@pytest.mark.parametrize("content_type", [CSV, NPY])
@pytest.mark.parametrize("column", [["Paris", "Rome"], pd.to_datetime(["2024-01-01", "2024-01-02"])])
def test_non_numeric_columns_are_refused_for_csv_and_npy_naming_the_column(content_type, column):
    frame = pd.DataFrame({"x": [1.0, 2.0], "city": column})
    with pytest.raises(ConfigError, match=rf"frame\['city'\]\.dtype=.* a numeric or boolean dtype for {content_type}"):
        codecs.encode_rows(frame, content_type)


def test_values_json_cannot_hold_are_refused_naming_the_column():
    frame = pd.DataFrame({"blob": [b"\x00\x01", b"\x02"]})
    with pytest.raises(ConfigError, match=r"frame\['blob'\]"):
        codecs.encode_rows(frame, JSONLINES)


def test_parquet_keeps_column_names_as_strings():
    frame = pd.DataFrame([[1.0, 2.0]], columns=[0, "b"])
    data = handler.input_fn(codecs.encode_rows(frame, PARQUET), PARQUET)
    assert list(data.columns) == ["0", "b"]
    with pytest.raises(ConfigError, match=r"frame\.columns=\['1'\].*distinct names"):
        codecs.encode_rows(pd.DataFrame([[1, 2]], columns=[1, "1"]), PARQUET)


def test_payloads_of_no_rows():
    empty = pd.DataFrame({"x": pd.Series([], dtype=float)})
    assert codecs.encode_rows(empty, JSONLINES) == b""
    assert codecs.encode_rows(empty, JSON) == b"[]"


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_predict_proba_answers_become_one_column_per_class(iris, content_type):
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    frame = iris.data.iloc[::10]
    answer = invoke(frame, content_type, model, custom_attributes="method=predict_proba")
    assert list(answer.columns) == [0, 1, 2]
    # Inputs arrive bit for bit, so the probabilities are the very ones the estimator computes locally.
    np.testing.assert_array_equal(answer.to_numpy(), model.predict_proba(frame))


@pytest.mark.parametrize("accept", CONTENT_TYPES)
def test_1d_answers_become_a_prediction_column(iris, accept):
    model = LogisticRegression(max_iter=1000).fit(iris.data.to_numpy(), iris.target_names[iris.target])
    frame = iris.data.iloc[::15]
    answer = invoke(frame, JSONLINES, model, accept=accept)
    assert list(answer.columns) == ["prediction"]
    assert answer["prediction"].tolist() == model.predict(frame.to_numpy()).tolist()


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_an_answer_with_the_wrong_number_of_rows_is_an_output_shape_error(content_type):
    answer, answer_type = handler.output_fn(np.arange(3.0), content_type)
    with pytest.raises(OutputShapeError, match="the model returned 3 rows for a payload of 5 rows"):
        codecs.decode_output(answer, answer_type, rows=5)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'[{"label": "cat", "score": 0.9}, {"label": "dog", "score": 0.6}]', JSON, LABELS_AND_SCORES),
        (b'{"label": "cat", "score": 0.9}\n{"label": "dog", "score": 0.6}\n', JSONLINES, LABELS_AND_SCORES),
        (b'{"predictions": [1, 0]}', JSON, {"prediction": [1, 0]}),
        (b'{"predictions": [[0.1, 0.9], [0.7, 0.3]]}', JSON, {0: [0.1, 0.7], 1: [0.9, 0.3]}),
        (b'{"label": ["cat", "dog"]}', JSON, {"label": ["cat", "dog"]}),
        (b'["a", "b"]', "application/json; charset=utf-8", {"prediction": ["a", "b"]}),
        (b'[1, 2]', "application/vnd.example+json", {"prediction": [1, 2]}),
        (b'[1, 2]', "application/octet-stream", {"prediction": [1, 2]}),
        (b'1\r\n\r\n2\r\n', "application/x-jsonlines", {"prediction": [1, 2]}),
        (b'[1, 2]\n[3]\n', JSONLINES, {"prediction": [[1, 2], [3]]}),
    ],
)
def test_answers_other_servers_send(body, content_type, expected):
    answer = codecs.decode_output(body, content_type, rows=2)
    assert answer.to_dict("list") == expected
    assert answer.index.equals(pd.RangeIndex(2))


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"<html>busy</html>", JSON, "application/json answer is not JSON"),
        (b"1\n2 3\n", JSONLINES, "line 2 of the model's application/jsonlines answer is not one JSON value"),
        (b"\xff\xfe", JSON, "not UTF-8"),
        (b"42", JSON, "expected a JSON list"),
        (b"1\n2,3\n", CSV, "cannot be read as rows"),
        (b"not npy", NPY, "not a .npy array"),
        (b"not parquet", PARQUET, "cannot be read"),
        (b"\x89PNG", "image/png", "content type 'image/png': it is not JSON"),
    ],
)
def test_unreadable_answers_are_output_shape_errors(body, content_type, message):
    with pytest.raises(OutputShapeError, match=message):
        codecs.decode_output(body, content_type, rows=2)


def test_decode_single_gives_the_value_text_or_bytes():
    assert codecs.decode_single(b'{"label": "cat"}', "application/json") == {"label": "cat"}
    assert codecs.decode_single(b'"cat"\n', JSONLINES) == "cat"
    assert codecs.decode_single("ça".encode(), "text/plain; charset=utf-8") == "ça"
    assert codecs.decode_single(b"\x89PNG", "image/png") == b"\x89PNG"
    with pytest.raises(OutputShapeError, match="not JSON"):
        codecs.decode_single(b"oops", "application/json")


def test_content_types_are_normalised_and_checked():
    assert codecs.check_content_type(" Application/JSONLines; charset=utf-8") == JSONLINES
    assert codecs.check_content_type("application/x-jsonlines") == JSONLINES
    with pytest.raises(ConfigError, match=r"accept='text/html' is invalid: allowed one of application/jsonlines, "
                                          r"application/json, text/csv, application/x-parquet, application/x-npy"):
        codecs.check_content_type("text/html", field="accept")
    with pytest.raises(ConfigError, match="content_type=None"):
        codecs.encode_rows(pd.DataFrame({"x": [1]}), None)
    assert [codecs.payload_extension(t) for t in CONTENT_TYPES] == [".jsonl", ".json", ".csv", ".parquet", ".npy"]


@pytest.mark.parametrize("content_type", TEXT_TYPES)
def test_without_pyarrow_text_payloads_carry_the_same_values(monkeypatch, content_type):
    values = tricky_floats(200)
    frame = pd.DataFrame({"x": values, "n": np.arange(len(values)), "flag": np.arange(len(values)) % 2 == 0})
    if content_type != CSV:
        frame["label"] = [None if i % 3 else "ça" for i in range(len(values))]
    fast = handler.input_fn(codecs.encode_rows(frame, content_type), content_type)
    monkeypatch.setattr(codecs, "_pa", None)
    slow = handler.input_fn(codecs.encode_rows(frame, content_type), content_type)
    assert slow.shape == fast.shape == frame.shape
    if content_type == CSV:
        assert_same_floats(slow, fast)
    else:
        assert_same_floats(slow[:, 0], fast[:, 0])
        assert slow[:, 1:].tolist() == fast[:, 1:].tolist()


def test_big_frames_split_across_threads_keep_row_order():
    frame = pd.DataFrame({"i": np.arange(200_000), "x": np.arange(200_000) / 7})
    rows = codecs.encode_rows(frame, JSONLINES).splitlines()
    assert len(rows) == 200_000
    assert json.loads(rows[123_456]) == [123_456, 123_456 / 7]


def test_docstring_examples_run():
    assert doctest.testmod(codecs).failed == 0


@pytest.mark.parametrize("content_type", [codecs.JSONLINES, codecs.JSON])
def test_a_text_column_reaches_a_text_pipeline_as_strings(content_type):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["good great fine", "bad awful poor", "great good", "awful bad"]
    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, [1, 0, 1, 0])
    frame = pd.DataFrame({"review": ["a great, good day", "awful — bad ünïcode"]})
    body = codecs.encode_rows(frame, content_type)
    answer, media = handler.output_fn(handler.predict_fn(handler.input_fn(body, content_type), pipeline),
                                      content_type)
    assert codecs.decode_output(answer, media, rows=2)["prediction"].tolist() == [1, 0]
