"""The default scikit-learn handler (code/inference.py of package_estimator), called directly."""

from __future__ import annotations

import io
import json
import math
import sys
import warnings
from types import SimpleNamespace

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import make_column_transformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline

from mf_sm_async.serving import sklearn_inference as handler

JSONLINES_TYPES = ["application/jsonlines", "application/x-jsonlines"]
PARQUET = "application/x-parquet"
ALL_TYPES = ["application/json", *JSONLINES_TYPES, "text/csv", "application/x-npy", PARQUET]


def invoke(model, body, content_type="application/json", accept="application/json", custom_attributes=None):
    context = SimpleNamespace(custom_attributes=custom_attributes, request_headers={})
    data = handler.input_fn(body, content_type, context)
    prediction = handler.predict_fn(data, model, context)
    return handler.output_fn(prediction, accept, context)


def encode(rows: np.ndarray, content_type: str) -> bytes:
    if content_type == "application/json":
        return json.dumps(rows.tolist()).encode()
    if content_type in JSONLINES_TYPES:
        return "".join(json.dumps(row) + "\n" for row in rows.tolist()).encode()
    if content_type == "text/csv":
        return "".join(",".join(repr(v) for v in row) + "\n" for row in rows.tolist()).encode()
    buffer = io.BytesIO()
    if content_type == PARQUET:
        pq.write_table(pa.table({f"f{i}": rows[:, i] for i in range(rows.shape[1])}), buffer)
    else:
        np.save(buffer, rows)
    return buffer.getvalue()


def decode(body: bytes, accept: str):
    """What a client does with the response body; returns a list with one entry per row."""
    if accept == "application/json":
        return json.loads(body)
    if accept in JSONLINES_TYPES:
        assert body.endswith(b"\n")
        return [json.loads(line) for line in body.decode().splitlines()]
    if accept == "text/csv":
        lines = body.decode().splitlines()
        return [[float(v) for v in line.split(",")] if "," in line else float(line) for line in lines]
    if accept == PARQUET:
        table = pq.read_table(io.BytesIO(body))
        if table.column_names == ["prediction"]:
            return table.column("prediction").to_pylist()
        assert table.column_names == [str(i) for i in range(table.num_columns)]
        return [list(row.values()) for row in table.to_pylist()]
    return np.load(io.BytesIO(body)).tolist()


@pytest.fixture(scope="module")
def iris_frame_model(iris):
    """LogisticRegression fitted on a DataFrame, so it knows its feature names."""
    return LogisticRegression(max_iter=1000).fit(iris.data, iris.target)


def test_model_fn_loads_the_estimator_that_was_saved(tmp_path, iris, iris_model):
    joblib.dump(iris_model, tmp_path / "model.joblib")
    loaded = handler.model_fn(str(tmp_path))
    X = iris.data.to_numpy()
    assert loaded.predict(X).tolist() == iris_model.predict(X).tolist()


@pytest.mark.parametrize("content_type", ALL_TYPES)
def test_every_input_type_predicts_like_the_estimator(iris, iris_model, content_type):
    rows = iris.data.to_numpy()[::10]
    body, response_type = invoke(iris_model, encode(rows, content_type), content_type)
    assert response_type == "application/json"
    assert json.loads(body) == iris_model.predict(rows).tolist()


@pytest.mark.parametrize("accept", ALL_TYPES)
def test_every_output_type_has_one_entry_per_input_row(iris, iris_model, accept):
    rows = iris.data.to_numpy()[::7]
    body, response_type = invoke(iris_model, encode(rows, "application/json"), accept=accept)
    assert response_type == accept
    assert decode(body, accept) == iris_model.predict(rows).tolist()


@pytest.mark.parametrize("accept", ALL_TYPES)
def test_predict_proba_gives_one_row_of_class_probabilities_per_input_row(iris, iris_model, accept):
    rows = iris.data.to_numpy()[::7]
    body, _ = invoke(iris_model, encode(rows, "text/csv"), "text/csv", accept, "method=predict_proba")
    np.testing.assert_allclose(decode(body, accept), iris_model.predict_proba(rows), rtol=1e-12)


def test_method_is_found_among_other_custom_attributes(iris, iris_model):
    rows = iris.data.to_numpy()[:3]
    body, _ = invoke(iris_model, encode(rows, "application/json"), custom_attributes="trace=ab=c, method=decision_function;x=1")
    np.testing.assert_allclose(json.loads(body), iris_model.decision_function(rows), rtol=1e-12)


def test_transform_method_returns_the_transformed_rows(iris):
    X = iris.data.to_numpy()
    model = KMeans(n_clusters=3, n_init=1, random_state=0).fit(X)
    body, _ = invoke(model, encode(X[:4], "application/json"), custom_attributes="method=transform")
    np.testing.assert_allclose(json.loads(body), model.transform(X[:4]), rtol=1e-12)


def test_unknown_method_names_the_allowed_ones(iris, iris_model):
    with pytest.raises(ValueError, match="'predict_probas'.*predict_proba, predict_log_proba, decision_function"):
        invoke(iris_model, encode(iris.data.to_numpy()[:2], "application/json"), custom_attributes="method=predict_probas")


def test_method_the_estimator_lacks_is_a_clear_error():
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    with pytest.raises(ValueError, match="LinearRegression has no predict_proba"):
        invoke(model, b"[[0.5]]", custom_attributes="method=predict_proba")


def test_dict_rows_follow_the_fitted_column_order(iris, iris_frame_model):
    frame = iris.data.iloc[::10]
    records = [{"id": i, **dict(reversed(list(row.items())))} for i, row in enumerate(frame.to_dict("records"))]
    for content_type, body in [
        ("application/json", json.dumps(records)),
        ("application/json", json.dumps({"instances": records})),
        ("application/jsonlines", "\n".join(json.dumps(r) for r in records)),
        ("application/json", json.dumps({c: frame[c].tolist() for c in reversed(frame.columns)})),
    ]:
        out, _ = invoke(iris_frame_model, body, content_type)
        assert json.loads(out) == iris_frame_model.predict(frame).tolist(), body[:80]


def test_one_json_object_of_values_is_one_row(iris, iris_frame_model):
    row = iris.data.iloc[[50]]
    out, _ = invoke(iris_frame_model, json.dumps(row.to_dict("records")[0]))
    assert json.loads(out) == iris_frame_model.predict(row).tolist()


def test_list_rows_reach_a_frame_fitted_model_without_a_feature_name_warning(iris, iris_frame_model):
    rows = iris.data.to_numpy()[:5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = invoke(iris_frame_model, encode(rows, "text/csv"), "text/csv")
    assert json.loads(out) == iris_frame_model.predict(iris.data.iloc[:5]).tolist()


def test_dict_rows_missing_a_fitted_column_name_it(iris, iris_frame_model):
    records = iris.data.iloc[:2].drop(columns=["petal width (cm)"]).to_dict("records")
    with pytest.raises(ValueError, match=r"lack column\(s\) \['petal width \(cm\)'\]"):
        invoke(iris_frame_model, json.dumps(records))


def test_content_type_parameters_are_ignored(iris, iris_model):
    rows = iris.data.to_numpy()[:3]
    body, response_type = invoke(
        iris_model, encode(rows, "text/csv"), "text/csv; charset=utf-8", "application/json; charset=utf-8"
    )
    assert response_type == "application/json"
    assert json.loads(body) == iris_model.predict(rows).tolist()


def test_utf8_bom_in_a_csv_body_is_accepted(iris, iris_model):
    rows = iris.data.to_numpy()[:2]
    body, _ = invoke(iris_model, b"\xef\xbb\xbf" + encode(rows, "text/csv"), "text/csv")
    assert json.loads(body) == iris_model.predict(rows).tolist()


def test_flat_list_of_strings_reaches_a_text_pipeline_one_row_each():
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(
        ["good film", "great film", "bad film", "awful film"], ["pos", "pos", "neg", "neg"]
    )
    body, _ = invoke(model, json.dumps(["a great film", "an awful film", "good"]))
    assert json.loads(body) == ["pos", "neg", "pos"]


def test_flat_list_of_numbers_is_one_row_each_for_a_one_feature_model():
    model = LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 2.0, 4.0])
    body, _ = invoke(model, b"[3, 4, 5]")
    np.testing.assert_allclose(json.loads(body), [6.0, 8.0, 10.0])


class _Constant:
    def __init__(self, values):
        self.values = values

    def predict(self, X):
        return np.asarray(self.values[: len(X)])


@pytest.mark.parametrize("accept", ["application/json", "application/jsonlines", "text/csv"])
def test_nan_and_infinities_round_trip_through_text_outputs(accept):
    body, _ = invoke(_Constant([math.nan, math.inf, -math.inf, 1.5]), b"[[0], [0], [0], [0]]", accept=accept)
    values = decode(body, accept)
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1.5]


@pytest.mark.parametrize("accept", ALL_TYPES)
def test_unicode_string_labels_survive_every_output_type(accept):
    labels = ["ça va", "日本語", "😀, \"quoted\""]
    model = LogisticRegression().fit([[0.0], [1.0], [2.0]], labels)
    body, _ = invoke(model, b"[[0.0], [1.0], [2.0]]", accept=accept)
    if accept == "text/csv":
        import csv

        assert [row[0] for row in csv.reader(io.StringIO(body.decode("utf-8")))] == labels
    else:
        assert decode(body, accept) == labels


def test_estimator_returning_the_wrong_number_of_rows_is_an_error():
    with pytest.raises(ValueError, match="returned 1 rows for 3 input rows"):
        invoke(_Constant([1.0]), b"[[0], [0], [0]]")


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/xml", b"<rows/>", "unsupported content type 'application/xml'.*text/csv"),
        ("application/json", b"[]", "no rows"),
        ("application/json", b"42", "must be a list of rows"),
        ("application/json", b"[[1, 2], [3]]", "different lengths"),
        ("application/json", b'{"a": [1, 2], "b": 3}', "every column to a list"),
        ("application/json", b'[{"a": 1}, [1]]', "all lists or all objects"),
        ("text/csv", b"", "no rows"),
        ("text/csv", b"sepal,petal\n1,2\n", "without a header"),
    ],
)
def test_undecodable_payloads_say_what_is_wrong(content_type, body, message):
    with pytest.raises(ValueError, match=message):
        handler.input_fn(body, content_type)


def test_pickled_npy_payloads_are_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        handler.input_fn(buffer.getvalue(), "application/x-npy")


def test_unsupported_accept_names_the_supported_ones(iris_model):
    with pytest.raises(ValueError, match="unsupported accept type 'image/png'.*application/x-npy"):
        invoke(iris_model, b"[[1, 2, 3, 4]]", accept="image/png")


def parquet_payload(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


def test_parquet_columns_follow_the_fitted_names_whatever_their_order(iris, iris_frame_model):
    frame = iris.data.iloc[::10]
    shuffled = frame[list(reversed(frame.columns))].assign(id=range(len(frame)))
    out, _ = invoke(iris_frame_model, parquet_payload(shuffled), PARQUET)
    assert json.loads(out) == iris_frame_model.predict(frame).tolist()


def test_parquet_payloads_keep_string_features_and_missing_values():
    model = make_pipeline(make_column_transformer((TfidfVectorizer(), "text")), LogisticRegression()).fit(
        pd.DataFrame({"text": ["good film", "awful film"]}), ["pos", "neg"]
    )
    data = handler.input_fn(parquet_payload(pd.DataFrame({"text": ["a good film", None]})), PARQUET)
    assert data["text"].tolist()[0] == "a good film" and data["text"].isna().tolist() == [False, True]
    body, _ = invoke(model, parquet_payload(pd.DataFrame({"text": ["a good film", "so awful"]})), PARQUET,
                     "application/json")
    assert json.loads(body) == ["pos", "neg"]


def test_parquet_answer_names_its_columns(iris, iris_model):
    rows = iris.data.to_numpy()[:3]
    payload = encode(rows, "application/json")
    body, _ = invoke(iris_model, payload, accept=PARQUET)
    assert pq.read_table(io.BytesIO(body)).column_names == ["prediction"]
    body, _ = invoke(iris_model, payload, accept=PARQUET, custom_attributes="method=predict_proba")
    assert pq.read_table(io.BytesIO(body)).column_names == ["0", "1", "2"]


def test_parquet_payload_without_rows_is_refused():
    with pytest.raises(ValueError, match="no rows"):
        handler.input_fn(parquet_payload(pd.DataFrame({"a": pd.Series([], dtype=float)})), PARQUET)


def test_parquet_without_pyarrow_in_the_image_says_so(monkeypatch, iris_model):
    body = parquet_payload(pd.DataFrame({"a": [1.0]}))
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    with pytest.raises(ValueError, match="application/x-parquet needs pyarrow in the model image"):
        handler.input_fn(body, PARQUET)
    with pytest.raises(ValueError, match="needs pyarrow in the model image"):
        handler.output_fn(np.array([1.0]), PARQUET)
