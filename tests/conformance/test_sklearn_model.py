"""A real scikit-learn estimator, packaged by `package_estimator`, served by the emulator exactly as a
user's handler is: the predictions that come back through S3 equal the estimator's own."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from mf_sm_async.model import package_estimator

from .conftest import Deployment, create_deployment


@pytest.fixture(scope="module")
def digits_model():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    features, labels = load_digits(return_X_y=True)
    return LogisticRegression(max_iter=2000).fit(features[:1200], labels[:1200]), features[1200:1300]


@pytest.fixture(scope="module")
def sklearn_endpoint(clients, digits_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sk")
    dep = create_deployment(clients, tmp, package_estimator(digits_model[0], tmp))
    yield dep
    clients.sagemaker.delete_endpoint(EndpointName=dep.name)


def score(dep: Deployment, body: bytes, content_type: str, accept: str, **extra) -> bytes:
    answer = dep.clients.sagemaker_runtime.invoke_endpoint_async(
        EndpointName=dep.name, Body=body, ContentType=content_type, Accept=accept, **extra)
    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Completed", note.get("failureReason")
    assert note["responseParameters"]["contentType"].startswith(accept)
    return dep.read(answer["OutputLocation"])


def test_json_lines_in_and_out(sklearn_endpoint, digits_model):
    model, rows = digits_model
    body = "".join(json.dumps(r.tolist()) + "\n" for r in rows).encode()
    out = score(sklearn_endpoint, body, "application/jsonlines", "application/jsonlines")
    assert [json.loads(line) for line in out.decode().splitlines()] == model.predict(rows).tolist()


def test_csv_in_and_out(sklearn_endpoint, digits_model):
    model, rows = digits_model
    body = "\n".join(",".join(str(v) for v in r) for r in rows).encode()
    out = score(sklearn_endpoint, body, "text/csv", "text/csv")
    assert [int(float(v)) for v in out.decode().split()] == model.predict(rows).tolist()


def test_npy_in_json_out_with_predict_proba(sklearn_endpoint, digits_model):
    model, rows = digits_model
    buffer = io.BytesIO()
    np.save(buffer, rows)
    out = score(sklearn_endpoint, buffer.getvalue(), "application/x-npy", "application/json",
                CustomAttributes="method=predict_proba")
    np.testing.assert_allclose(np.array(json.loads(out)), model.predict_proba(rows), rtol=1e-9)
