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


# --------------------------------------------------------------------------------------------------
# What an image URI names

from mf_sm_async.images import parse_image_uri, version_key  # noqa: E402


@pytest.mark.parametrize("framework,version", [("xgboost", v) for v in
                                               ("0.90-1", "0.90-2", "1.0-1", "1.2-1", "1.2-2", "1.3-1", "1.5-1",
                                                "1.7-1", "3.0-5")]
                         + [("sklearn", v) for v in ("0.20.0", "0.23-1", "1.0-1", "1.2-1", "1.4-2")])
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "cn-north-1", "ap-southeast-2"])
def test_what_the_sdk_retrieves_is_recognised_with_its_version(framework, version, region):
    from mf_sm_async.images import _image_uris

    uri = _image_uris().retrieve(framework=framework, region=region, version=version, instance_type="ml.m5.large")
    image = parse_image_uri(uri)
    assert (image.kind, image.version) == (framework, version), uri


@pytest.mark.parametrize("uri,kind,version", [
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1", "xgboost", "1.7-1"),
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3", "xgboost", "1.0-1"),
    ("450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-xgboost:3.0-5", "xgboost", "3.0-5"),
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:latest", "xgboost", None),
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost@sha256:" + "0" * 64, "xgboost", None),
    ("localhost:5000/sagemaker-xgboost:1.5-1", "xgboost", "1.5-1"),
    ("811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:1", "xgboost", "0.72"),  # the legacy image
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3", "sklearn", "1.4-2"),
    ("sagemaker-scikit-learn:1.2-1", "sklearn", "1.2-1"),
    ("mf-sm-async/local-handler:latest", "local-handler", None),
    ("mf-sm-async/local-handler", "local-handler", None),
    ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310", "other", None),
    ("xgboost:1", "other", None),  # not AWS's registry
    ("my-registry.example.com/team/sagemaker-xgboost-custom:1.7-1", "other", None),
    ("bench", "other", None),
])
def test_image_uris_in_any_form(uri, kind, version):
    image = parse_image_uri(uri)
    assert (image.uri, image.kind, image.version) == (uri, kind, version)


def test_versions_compare_as_numbers():
    assert version_key("1.10-1") > version_key("1.7-1") > version_key("1.5-1") > version_key("0.90-2")
    assert parse_image_uri("x.amazonaws.com/sagemaker-xgboost:1.5-1").version_at_least("1.5-1")
    assert not parse_image_uri("x.amazonaws.com/sagemaker-xgboost:1.3-1").version_at_least("1.5-1")
    assert parse_image_uri("x.amazonaws.com/sagemaker-xgboost:latest").version_at_least("3.0-5")  # the newest
