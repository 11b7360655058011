"""Check, before anything is created, that the execution role can do what an async endpoint needs.

AWS reports a role that SageMaker cannot assume at CreateModel, but a role that cannot write the
outputs or publish the notifications only shows up later, as requests that fail or notifications
that never come. Where the caller may read the role and simulate its policies, we say which
permission is missing up front; where the caller may not (``AccessDenied`` on iam:GetRole or
iam:SimulatePrincipalPolicy), we log that the check was skipped and go on.
"""

from __future__ import annotations

import json
import logging
import urllib.parse

from botocore.exceptions import ClientError

from .errors import DeployError

log = logging.getLogger(__name__)
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
_CANNOT_CHECK = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "NotImplemented",
                 "InvalidAction")


def needed_permissions(bucket: str, prefix: str, topics: list[str]) -> list[tuple[str, str]]:
    """(action, resource) pairs the endpoint's containers and SageMaker use on the role's behalf."""
    objects = f"arn:aws:s3:::{bucket}/{prefix}/*"
    return [("s3:GetObject", objects), ("s3:PutObject", objects), *(("sns:Publish", t) for t in topics),
            ("cloudwatch:PutMetricData", "*"), ("logs:PutLogEvents", "*"), ("ecr:BatchGetImage", "*")]


def check_role(iam, role_arn: str, permissions: list[tuple[str, str]]) -> None:
    """Raise DeployError naming what the role lacks; log and return if the caller may not look."""
    name = role_arn.rsplit("/", 1)[-1]
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "NoSuchEntity":
            raise DeployError(f"role_arn={role_arn!r}: no such role in this account",
                              "create it (see the README's 'IAM role' section) or pass another role_arn") from None
        if code in _CANNOT_CHECK:
            log.info("cannot read role %s (%s): skipping the permission check", name, code)
            return
        raise
    if not _trusts_sagemaker(role.get("AssumeRolePolicyDocument")):
        raise DeployError(f"role_arn={role_arn!r}: its trust policy does not let {SAGEMAKER_PRINCIPAL} assume it",
                          f"add a statement allowing sts:AssumeRole to the service principal {SAGEMAKER_PRINCIPAL}")
    missing = _denied(iam, role_arn, permissions)
    if missing:
        raise DeployError(f"role_arn={role_arn!r} may not " + ", ".join(f"{a} on {r}" for a, r in missing),
                          "add these to the role's policy (see the README's 'IAM role' section)")


def _trusts_sagemaker(document) -> bool:
    if isinstance(document, str):  # IAM returns it URL-encoded JSON on the wire; boto3 usually decodes it
        document = json.loads(urllib.parse.unquote(document))
    for statement in (document or {}).get("Statement", []):
        services = (statement.get("Principal") or {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") == "Allow" and SAGEMAKER_PRINCIPAL in services and (
                "sts:AssumeRole" in actions or "sts:*" in actions or "*" in actions):
            return True
    return False


def _denied(iam, role_arn: str, permissions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    denied = []
    for action, resource in permissions:
        try:
            results = iam.simulate_principal_policy(PolicySourceArn=role_arn, ActionNames=[action],
                                                    ResourceArns=[resource])["EvaluationResults"]
        except ClientError as error:
            if error.response["Error"]["Code"] in _CANNOT_CHECK:
                log.info("cannot simulate the policies of %s: skipping the permission check", role_arn)
                return []
            raise
        if any(r["EvalDecision"] != "allowed" for r in results):
            denied.append((action, resource))
    return denied
