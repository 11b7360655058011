"""The AWS image for a scikit-learn model matches the version it was pickled with, or deploy says why not."""

import pytest

from mf_sm_async import DeployError
from mf_sm_async.images import matching_version, sklearn_image

VERSIONS = ["0.20.0", "0.23-1", "1.0-1", "1.2-1", "1.4-2", "1.4-2-py312", "1.9-0"]


@pytest.mark.parametrize("local,image", [("1.9.1", "1.9-0"), ("1.2.2", "1.2-1"), ("1.4.0", "1.4-2"),
                                         ("0.23.2", "0.23-1"), ("0.20.3", "0.20.0"), ("1.7.0", None),
                                         ("1.1.0", None)])
def test_matching_version(local, image):
    assert matching_version(local, VERSIONS) == image


def test_sklearn_image_from_the_sdk():
    assert sklearn_image("1.2.2", "eu-west-1", "ml.m5.large").endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")


def test_no_image_for_the_version_names_both():
    with pytest.raises(DeployError) as error:
        sklearn_image("1.7.0", "us-east-1", "ml.m5.large")
    assert "scikit-learn 1.7.0" in str(error.value) and "1.2-1" in str(error.value)
