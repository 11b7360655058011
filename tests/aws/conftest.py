"""Tests against a real AWS account: skipped unless asked for with MF_SM_ASYNC_TEST_AWS=1.

They need credentials in the standard chain, a region, MF_SM_ASYNC_ROLE_ARN (a SageMaker execution role
with S3, SNS and CloudWatch rights) and quota for the instance type (ml.m5.large by default,
MF_SM_ASYNC_TEST_INSTANCE_TYPE to change it). Everything they make is deleted at the end.
"""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("MF_SM_ASYNC_TEST_AWS") == "1":
        return
    skip = pytest.mark.skip(reason="real AWS: set MF_SM_ASYNC_TEST_AWS=1 (and credentials, MF_SM_ASYNC_ROLE_ARN)")
    for item in items:
        if "tests/aws/" in str(item.fspath):
            item.add_marker(skip)
