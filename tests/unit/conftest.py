"""Shared fixtures: the iris data set and a model fitted on it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def iris():
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True)


@pytest.fixture(scope="session")
def iris_model(iris):
    """LogisticRegression fitted on a numpy array (no feature names)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(iris.data.to_numpy(), iris.target.to_numpy())
