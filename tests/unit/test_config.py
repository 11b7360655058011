"""Every EndpointSpec field is checked when the spec is made, with an error naming field, value and range."""

import dataclasses
import doctest
import math

import numpy as np
import pytest

from mf_sm_async import ConfigError
from mf_sm_async import config
from mf_sm_async.config import LOCAL_ROLE_ARN, TEARDOWN_MODES, EndpointSpec

ROLE = "arn:aws:iam::111122223333:role/sagemaker-execution"
SAME_AS_VALUE = object()

INT_1_1000 = "an integer from 1 to 1000"
INT_0_86400 = "an integer from 0 to 86400"
NAME = "None or 1 to 63 letters, digits and hyphens"
INSTANCE = "an instance type 'ml.<family>.<size>'"
BUCKET = "bucket name of 3 to 63 lowercase letters, digits, dots and hyphens"
PREFIX = "prefix that has no leading slash and no control characters"
ROLE_ALLOWED = "an IAM role ARN like 'arn:aws:iam::123456789012:role/name'"
NUMBER = "a number greater than 0 and at most 1000000"
TAGS = "a dict or an iterable of (key, value) string pairs"
TAG_KEY = "tag keys of 1 to 128 characters, not starting with 'aws:' or 'mf-sm-async:'"

# (field, invalid value, allowed text the message must contain, value shown when it is not the argument)
INVALID = [
    ("name", "", NAME, SAME_AS_VALUE),
    ("name", "-endpoint", NAME, SAME_AS_VALUE),
    ("name", "endpoint-", NAME, SAME_AS_VALUE),
    ("name", "my_endpoint", NAME, SAME_AS_VALUE),
    ("name", "my.endpoint", NAME, SAME_AS_VALUE),
    ("name", "a" * 64, NAME, SAME_AS_VALUE),
    ("name", "a" + "-" * 62 + "b", NAME, SAME_AS_VALUE),  # the pattern alone would accept it: 64 chars
    ("name", "endpoint\n", NAME, SAME_AS_VALUE),
    ("name", 5, NAME, SAME_AS_VALUE),
    ("instance_type", "m5.large", INSTANCE, SAME_AS_VALUE),
    ("instance_type", "ml.m5", INSTANCE, SAME_AS_VALUE),
    ("instance_type", "ML.M5.LARGE", INSTANCE, SAME_AS_VALUE),
    ("instance_type", "ml.m5.large\n", INSTANCE, SAME_AS_VALUE),
    ("instance_type", "ml.m5.large.x", INSTANCE, SAME_AS_VALUE),
    ("instance_type", "ml.m5_large", INSTANCE, SAME_AS_VALUE),
    ("instance_type", None, INSTANCE, SAME_AS_VALUE),
    ("min_instances", -1, "an integer from 0 to max_instances (2)", SAME_AS_VALUE),
    ("min_instances", True, "an integer from 0 to max_instances (2)", SAME_AS_VALUE),
    ("min_instances", 1.0, "an integer from 0 to max_instances (2)", SAME_AS_VALUE),
    ("min_instances", "1", "an integer from 0 to max_instances (2)", SAME_AS_VALUE),
    ("min_instances", None, "an integer from 0 to max_instances (2)", SAME_AS_VALUE),
    ("max_instances", 0, INT_1_1000, SAME_AS_VALUE),
    ("max_instances", 1001, INT_1_1000, SAME_AS_VALUE),
    ("max_instances", 2.0, INT_1_1000, SAME_AS_VALUE),
    ("max_instances", True, INT_1_1000, SAME_AS_VALUE),
    ("max_instances", "2", INT_1_1000, SAME_AS_VALUE),
    ("initial_instances", 0, "an integer from 1 to max_instances (2)", SAME_AS_VALUE),
    ("initial_instances", 1.5, "an integer from 1 to max_instances (2)", SAME_AS_VALUE),
    ("initial_instances", True, "an integer from 1 to max_instances (2)", SAME_AS_VALUE),
    ("max_concurrent_invocations_per_instance", 0, INT_1_1000, SAME_AS_VALUE),
    ("max_concurrent_invocations_per_instance", 1001, INT_1_1000, SAME_AS_VALUE),
    ("max_concurrent_invocations_per_instance", 4.0, INT_1_1000, SAME_AS_VALUE),
    ("max_concurrent_invocations_per_instance", False, INT_1_1000, SAME_AS_VALUE),
    ("notifications", 1, "True or False", SAME_AS_VALUE),
    ("notifications", 0, "True or False", SAME_AS_VALUE),
    ("notifications", "yes", "True or False", SAME_AS_VALUE),
    ("notifications", None, "True or False", SAME_AS_VALUE),
    ("s3_prefix", "my-bucket/runs", "None or 's3://bucket[/prefix]'", SAME_AS_VALUE),
    ("s3_prefix", "S3://my-bucket", "None or 's3://bucket[/prefix]'", SAME_AS_VALUE),
    ("s3_prefix", 5, "None or 's3://bucket[/prefix]'", SAME_AS_VALUE),
    ("s3_prefix", "s3://", BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://ab", BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://" + "a" * 64, BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://My-Bucket", BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://my_bucket", BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://-bucket", BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://bucket-/runs", BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://my..bucket", BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://192.168.5.4/runs", BUCKET, SAME_AS_VALUE),
    ("s3_prefix", "s3://my-bucket//runs", PREFIX, SAME_AS_VALUE),
    ("s3_prefix", "s3://my-bucket/ru\nns", PREFIX, SAME_AS_VALUE),
    ("teardown", "destroy", "one of 'zero', 'delete', 'keep'", SAME_AS_VALUE),
    ("teardown", "Zero", "one of 'zero', 'delete', 'keep'", SAME_AS_VALUE),
    ("teardown", "", "one of 'zero', 'delete', 'keep'", SAME_AS_VALUE),
    ("teardown", None, "one of 'zero', 'delete', 'keep'", SAME_AS_VALUE),
    ("teardown", ["zero"], "one of 'zero', 'delete', 'keep'", SAME_AS_VALUE),
    ("target", "azure", "None, 'local' or 'aws'", SAME_AS_VALUE),
    ("target", "Local", "None, 'local' or 'aws'", SAME_AS_VALUE),
    ("target", "", "None, 'local' or 'aws'", SAME_AS_VALUE),
    ("target", 1, "None, 'local' or 'aws'", SAME_AS_VALUE),
    ("role_arn", "", ROLE_ALLOWED, SAME_AS_VALUE),
    ("role_arn", "arn:aws:iam::12345:role/sm", ROLE_ALLOWED, SAME_AS_VALUE),
    ("role_arn", "arn:aws:iam::111122223333:user/sm", ROLE_ALLOWED, SAME_AS_VALUE),
    ("role_arn", "arn:aws:iam::111122223333:role/", ROLE_ALLOWED, SAME_AS_VALUE),
    ("role_arn", "arn:aws:iam::111122223333:role/sm role", ROLE_ALLOWED, SAME_AS_VALUE),
    ("role_arn", "arn:aws:iam::111122223333:role/sm\n", ROLE_ALLOWED, SAME_AS_VALUE),
    ("role_arn", "arn:aws:iam::١١١١٢٢٢٢٣٣٣٣:role/sm", ROLE_ALLOWED, SAME_AS_VALUE),  # Arabic-Indic digits
    ("role_arn", "sagemaker-execution", ROLE_ALLOWED, SAME_AS_VALUE),
    ("role_arn", 111122223333, ROLE_ALLOWED, SAME_AS_VALUE),
    ("image_uri", "", "None or 1 to 255 characters without whitespace", SAME_AS_VALUE),
    ("image_uri", "repo/image :latest", "None or 1 to 255 characters without whitespace", SAME_AS_VALUE),
    ("image_uri", "repo/image:latest\n", "None or 1 to 255 characters without whitespace", SAME_AS_VALUE),
    ("image_uri", "x" * 256, "None or 1 to 255 characters without whitespace", SAME_AS_VALUE),
    ("image_uri", 5, "None or 1 to 255 characters without whitespace", SAME_AS_VALUE),
    ("backlog_per_instance_target", 0, NUMBER, SAME_AS_VALUE),
    ("backlog_per_instance_target", 0.0, NUMBER, SAME_AS_VALUE),
    ("backlog_per_instance_target", -1.5, NUMBER, SAME_AS_VALUE),
    ("backlog_per_instance_target", 1_000_000.5, NUMBER, SAME_AS_VALUE),
    ("backlog_per_instance_target", math.inf, NUMBER, SAME_AS_VALUE),
    ("backlog_per_instance_target", math.nan, NUMBER, SAME_AS_VALUE),
    ("backlog_per_instance_target", True, NUMBER, SAME_AS_VALUE),
    ("backlog_per_instance_target", "5", NUMBER, SAME_AS_VALUE),
    ("scale_in_cooldown_seconds", -1, INT_0_86400, SAME_AS_VALUE),
    ("scale_in_cooldown_seconds", 86_401, INT_0_86400, SAME_AS_VALUE),
    ("scale_in_cooldown_seconds", 300.0, INT_0_86400, SAME_AS_VALUE),
    ("scale_in_cooldown_seconds", True, INT_0_86400, SAME_AS_VALUE),
    ("scale_out_cooldown_seconds", -1, INT_0_86400, SAME_AS_VALUE),
    ("scale_out_cooldown_seconds", 86_401, INT_0_86400, SAME_AS_VALUE),
    ("scale_out_cooldown_seconds", "60", INT_0_86400, SAME_AS_VALUE),
    ("tags", "team=ml", TAGS, SAME_AS_VALUE),
    ("tags", 5, TAGS, SAME_AS_VALUE),
    ("tags", [("team",)], TAGS, ("team",)),
    ("tags", [("team", 1)], TAGS, ("team", 1)),
    ("tags", ["team"], TAGS, "team"),
    ("tags", {"aws:owner": "me"}, TAG_KEY, SAME_AS_VALUE),
    ("tags", {"AWS:owner": "me"}, TAG_KEY, SAME_AS_VALUE),
    ("tags", {"mf-sm-async:run": "1"}, TAG_KEY, SAME_AS_VALUE),
    ("tags", {"": "me"}, TAG_KEY, SAME_AS_VALUE),
    ("tags", {"k" * 129: "v"}, TAG_KEY, SAME_AS_VALUE),
    ("tags", {"team": "v" * 257}, "tag values of 0 to 256 characters", SAME_AS_VALUE),
    ("tags", [("team", "ml"), ("team", "data")], "each tag key once", {"team": "data"}),
]


@pytest.mark.parametrize("field, value, allowed, shown", INVALID,
                         ids=[f"{case[0]}={case[1]!r}"[:60] for case in INVALID])
def test_an_invalid_field_names_itself_the_value_and_what_is_allowed(field, value, allowed, shown):
    with pytest.raises(ConfigError) as error:
        EndpointSpec(**{field: value})
    shown = value if shown is SAME_AS_VALUE else shown
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}={shown!r} is invalid: allowed ")
    assert allowed in error.value.allowed


def test_the_headline_reads_as_documented():
    with pytest.raises(ConfigError) as error:
        EndpointSpec(max_instances=0)
    assert error.value.headline == "max_instances=0 is invalid: allowed an integer from 1 to 1000"


@pytest.mark.parametrize("field, value", [
    ("name", "a"),
    ("name", "my-endpoint-1"),
    ("name", "a--b"),
    ("name", "a" * 63),
    ("name", "a" + "-" * 61 + "b"),
    ("instance_type", "ml.m5.large"),
    ("instance_type", "ml.g5.xlarge"),
    ("instance_type", "ml.g6.48xlarge"),
    ("instance_type", "ml.inf2.xlarge"),
    ("instance_type", "ml.m7i.large"),
    ("instance_type", "ml.p4de.24xlarge"),
    ("instance_type", "ml.c6i-flex.large"),
    ("max_concurrent_invocations_per_instance", 1),
    ("max_concurrent_invocations_per_instance", 1000),
    ("notifications", False),
    ("s3_prefix", "s3://abc"),
    ("s3_prefix", "s3://" + "a" * 63),
    ("s3_prefix", "s3://my.bucket-1/runs/2024"),
    ("s3_prefix", "s3://1bucket/a b/c"),
    ("teardown", "delete"),
    ("teardown", "keep"),
    ("target", "local"),
    ("target", "aws"),
    ("role_arn", ROLE),
    ("role_arn", "arn:aws:iam::111122223333:role/service-role/AmazonSageMaker-ExecutionRole"),
    ("role_arn", "arn:aws-cn:iam::111122223333:role/sm"),
    ("role_arn", "arn:aws-us-gov:iam::111122223333:role/sm+=,.@_-x"),
    ("image_uri", "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310"),
    ("image_uri", "x" * 255),
    ("backlog_per_instance_target", 1_000_000),
    ("backlog_per_instance_target", 1e-9),
    ("backlog_per_instance_target", 0.5),
    ("scale_in_cooldown_seconds", 0),
    ("scale_in_cooldown_seconds", 86_400),
    ("scale_out_cooldown_seconds", 0),
    ("scale_out_cooldown_seconds", 86_400),
])
def test_boundary_and_typical_values_are_accepted_as_given(field, value):
    assert getattr(EndpointSpec(**{field: value}), field) == value


@pytest.mark.parametrize("low, high", [(0, 1), (0, 1000), (1000, 1000), (3, 3)])
def test_instance_counts_accept_zero_and_max_instances(low, high):
    spec = EndpointSpec(min_instances=low, max_instances=high, initial_instances=high)
    assert (spec.min_instances, spec.max_instances, spec.initial_instances) == (low, high, high)


@pytest.mark.parametrize("kwargs, field, headline", [
    ({"min_instances": 3}, "min_instances",
     "min_instances=3 is invalid: allowed an integer from 0 to max_instances (2)"),
    ({"min_instances": 5, "max_instances": 4}, "min_instances",
     "min_instances=5 is invalid: allowed an integer from 0 to max_instances (4)"),
    ({"initial_instances": 5, "max_instances": 4}, "initial_instances",
     "initial_instances=5 is invalid: allowed an integer from 1 to max_instances (4)"),
    # An invalid max_instances is the one to fix, not the counts measured against it.
    ({"min_instances": 3, "max_instances": 0}, "max_instances",
     "max_instances=0 is invalid: allowed an integer from 1 to 1000"),
])
def test_a_count_beyond_max_instances_names_the_count_and_the_maximum(kwargs, field, headline):
    with pytest.raises(ConfigError) as error:
        EndpointSpec(**kwargs)
    assert error.value.field == field
    assert error.value.headline == headline


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers():
    spec = EndpointSpec(max_instances=np.int64(4), backlog_per_instance_target=np.float32(2.5))
    assert spec.max_instances == 4 and type(spec.max_instances) is int
    assert spec.backlog_per_instance_target == 2.5 and type(spec.backlog_per_instance_target) is float


def test_an_integer_backlog_target_is_stored_as_a_float():
    spec = EndpointSpec(backlog_per_instance_target=5)
    assert type(spec.backlog_per_instance_target) is float


@pytest.mark.parametrize("given, kept", [
    ("s3://my-bucket/", "s3://my-bucket"),
    ("s3://my-bucket/runs/", "s3://my-bucket/runs"),
    ("s3://my-bucket/runs//", "s3://my-bucket/runs"),
    ("s3://my-bucket/runs/a", "s3://my-bucket/runs/a"),
    (None, None),
])
def test_s3_prefix_loses_its_trailing_slash(given, kept):
    assert EndpointSpec(s3_prefix=given).s3_prefix == kept


@pytest.mark.parametrize("given", [
    {"team": "ml", "cost-center": "42"},
    [("team", "ml"), ("cost-center", "42")],
    (["cost-center", "42"], ["team", "ml"]),
    iter([("team", "ml"), ("cost-center", "42"), ("team", "ml")]),
])
def test_tags_become_a_sorted_tuple_of_pairs(given):
    assert EndpointSpec(tags=given).tags == (("cost-center", "42"), ("team", "ml"))


def test_tags_at_their_length_limits_are_kept():
    tags = {"k" * 128: "v" * 256, "empty": ""}
    assert EndpointSpec(tags=tags).tags == (("empty", ""), ("k" * 128, "v" * 256))


def test_reserved_tag_prefix_error_says_who_reserved_it():
    with pytest.raises(ConfigError) as error:
        EndpointSpec(tags={"mf-sm-async:flow": "x"})
    assert "'mf-sm-async:' by this package" in str(error.value)


def test_specs_with_the_same_tags_in_any_form_are_equal_and_hashable():
    by_dict = EndpointSpec(tags={"b": "2", "a": "1"})
    by_pairs = EndpointSpec(tags=[("a", "1"), ("b", "2")])
    assert by_dict == by_pairs and len({by_dict, by_pairs}) == 1


def test_a_spec_cannot_be_changed_after_validation():
    spec = EndpointSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.max_instances = 0


def test_defaults_are_valid_and_as_documented():
    spec = EndpointSpec()
    assert (spec.instance_type, spec.min_instances, spec.max_instances, spec.initial_instances) == (
        "ml.m5.large", 0, 2, 1)
    assert spec.teardown == "zero" == TEARDOWN_MODES[0] and spec.tags == () and spec.notifications is True


def test_from_kwargs_turns_a_typo_into_a_config_error_with_the_field_names():
    with pytest.raises(ConfigError) as error:
        EndpointSpec.from_kwargs(max_instance=3)
    names = sorted(f.name for f in dataclasses.fields(EndpointSpec))
    assert error.value.field == "max_instance" and error.value.value == 3
    assert error.value.headline == f"max_instance=3 is invalid: allowed one of: {', '.join(names)}"
    assert error.value.hint == "did you mean max_instances=?"


def test_from_kwargs_names_an_unknown_keyword_even_next_to_valid_ones():
    with pytest.raises(ConfigError) as error:
        EndpointSpec.from_kwargs(max_instances=3, colour="blue")
    assert error.value.field == "colour" and error.value.hint is None


def test_from_kwargs_builds_and_validates_like_the_constructor():
    assert EndpointSpec.from_kwargs(max_instances=3, tags={"a": "b"}) == EndpointSpec(max_instances=3,
                                                                                       tags=(("a", "b"),))
    with pytest.raises(ConfigError) as error:
        EndpointSpec.from_kwargs(max_instances=3, min_instances=4)
    assert error.value.field == "min_instances"


def test_aws_role_comes_from_the_argument_before_the_environment(monkeypatch):
    monkeypatch.setenv("MF_SM_ASYNC_ROLE_ARN", "arn:aws:iam::999999999999:role/from-env")
    assert EndpointSpec(role_arn=ROLE).resolve_role("aws") == ROLE


def test_aws_role_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("MF_SM_ASYNC_ROLE_ARN", "arn:aws:iam::999999999999:role/from-env")
    assert EndpointSpec().resolve_role("aws") == "arn:aws:iam::999999999999:role/from-env"


def test_an_invalid_role_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("MF_SM_ASYNC_ROLE_ARN", "sagemaker-role")
    with pytest.raises(ConfigError) as error:
        EndpointSpec().resolve_role("aws")
    assert error.value.field == "MF_SM_ASYNC_ROLE_ARN"
    assert error.value.headline.startswith("MF_SM_ASYNC_ROLE_ARN='sagemaker-role' is invalid: allowed an IAM")


@pytest.mark.parametrize("environment", [None, ""])
def test_aws_without_a_role_says_both_ways_to_give_one(monkeypatch, environment):
    if environment is None:
        monkeypatch.delenv("MF_SM_ASYNC_ROLE_ARN", raising=False)
    else:
        monkeypatch.setenv("MF_SM_ASYNC_ROLE_ARN", environment)
    with pytest.raises(ConfigError) as error:
        EndpointSpec().resolve_role("aws")
    assert error.value.field == "role_arn" and error.value.value is None
    assert error.value.allowed == "an IAM role ARN for the AWS target (argument role_arn= or MF_SM_ASYNC_ROLE_ARN)"
    assert error.value.hint and "role_arn=" in error.value.hint


def test_local_uses_the_given_role_or_a_dummy_and_ignores_the_environment(monkeypatch):
    monkeypatch.setenv("MF_SM_ASYNC_ROLE_ARN", "arn:aws:iam::999999999999:role/from-env")
    assert EndpointSpec().resolve_role("local") == LOCAL_ROLE_ARN == "arn:aws:iam::123456789012:role/mf-sm-async-local"
    assert EndpointSpec(role_arn=ROLE).resolve_role("local") == ROLE


@pytest.mark.parametrize("target", ["azure", None, ""])
def test_resolve_role_rejects_an_unknown_target(target):
    with pytest.raises(ConfigError) as error:
        EndpointSpec(role_arn=ROLE).resolve_role(target)
    assert error.value.field == "target" and "'local' or 'aws'" in error.value.allowed


def test_the_docstring_examples_run():
    result = doctest.testmod(config)
    assert result.attempted >= 5 and result.failed == 0
