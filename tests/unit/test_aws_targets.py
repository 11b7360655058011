"""Which target answers: local by default, AWS only when asked, anything else a clear error."""

import pytest

from mf_sm_async import ConfigError
from mf_sm_async.aws import local_env, resolve_target


def test_local_is_the_default(monkeypatch):
    monkeypatch.delenv("MF_SM_ASYNC_TARGET", raising=False)
    assert resolve_target() == "local"


def test_environment_selects_aws_and_an_argument_wins(monkeypatch):
    monkeypatch.setenv("MF_SM_ASYNC_TARGET", "aws")
    assert resolve_target() == "aws"
    assert resolve_target("local") == "local"


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_unknown_target_names_the_field_the_value_and_the_allowed(monkeypatch, source):
    if source == "argument":
        monkeypatch.delenv("MF_SM_ASYNC_TARGET", raising=False)
        call, field = (lambda: resolve_target("azure")), "target"
    else:
        monkeypatch.setenv("MF_SM_ASYNC_TARGET", "azure")
        call, field = resolve_target, "MF_SM_ASYNC_TARGET"
    with pytest.raises(ConfigError) as error:
        call()
    assert error.value.field == field
    assert "'azure'" in str(error.value) and "'local' or 'aws'" in str(error.value)


def test_local_env_has_the_endpoint_and_dummy_credentials_only():
    env = local_env("http://127.0.0.1:1234")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1234"
    assert env["AWS_ACCESS_KEY_ID"] == "testing" and env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "AWS_SESSION_TOKEN" not in env
