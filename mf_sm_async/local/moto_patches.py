"""The few places where the emulator changes moto itself, all here, applied once by the daemon.

- SageMaker: moto checks InstanceType against a years-old enum (no ml.g5 / ml.g6 / ml.inf2 ...); the
  control plane checks the instance type's shape instead (:mod:`.control_plane`), so moto's enum check is
  switched off.
- SQS: moto computes "now" through naive datetimes on every visibility check, and SendMessage computes all
  queue attributes (an O(messages) scan), so each SNS -> SQS delivery cost milliseconds once a queue held a
  few thousand notifications. The same epoch milliseconds from ``time.time()`` make that scan ~20x cheaper.
- SageMaker DescribeModel: moto answers ``"VpcConfig": {}`` and ``"Containers": []`` for a model made without
  them; AWS leaves absent members out, and the sagemaker SDK v3 (``ModelBuilder.build`` reads the model back
  into a pydantic shape) rejects an empty VpcConfig as missing its required Subnets / SecurityGroupIds.
- IAM SimulatePrincipalPolicy: moto has none (its server answered 500). The sagemaker SDK v3 checks an
  execution role with it before CreateModel (unless SAGEMAKER_VALIDATE_ROLE=false) and so does our own
  role check on AWS. It is answered from the role's (or user's) inline and attached policies, evaluated by
  moto's own policy engine: one result per action and resource, ``explicitDeny`` / ``allowed`` /
  ``implicitDeny``; an unknown principal is NoSuchEntity. Permission boundaries, SCPs and condition keys are
  not evaluated.
"""

from __future__ import annotations

import time

import moto.sqs.models as sqs_models
from moto.core.responses import ActionResult
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.iam.exceptions import NotFoundException
from moto.iam.responses import IamResponse
from moto.sagemaker.models import FakeEndpointConfig
from moto.sagemaker.models import Model as FakeModel

_applied = False


def _accept_any_instance_type(self, instance_type: str) -> None:
    pass


def _unix_time(dt=None) -> float:
    return time.time() if dt is None else _moto_unix_time(dt)


def _unix_time_millis(dt=None) -> float:
    return _unix_time(dt) * 1000.0


_moto_unix_time = sqs_models.unix_time
_moto_model_response = FakeModel.response_object.fget


def _model_response_without_empty_members(self) -> dict:
    return {k: v for k, v in _moto_model_response(self).items() if v != {} and v != []}


def _principal_policies(backend, arn: str) -> list[IAMPolicy]:
    kind, _, name = arn.split(":", 5)[-1].partition("/")
    try:
        principal = backend.get_role_by_arn(arn) if kind == "role" else backend.get_user(name.rsplit("/", 1)[-1])
    except NotFoundException:
        raise NotFoundException(f"The principal {arn} cannot be found.") from None
    return [*(IAMPolicy(document) for document in principal.policies.values()),
            *(IAMPolicy(policy) for policy in principal.managed_policies.values())]


_DECISIONS = {PermissionResult.PERMITTED: "allowed", PermissionResult.DENIED: "explicitDeny"}


def _simulate_principal_policy(self) -> ActionResult:
    policies = _principal_policies(self.backend, self._get_param("PolicySourceArn"))
    results = []
    for action in self._get_param("ActionNames", []):
        for resource in self._get_param("ResourceArns") or ["*"]:
            verdicts = {policy.is_action_permitted(action, resource) for policy in policies}
            verdict = next((v for v in (PermissionResult.DENIED, PermissionResult.PERMITTED) if v in verdicts), None)
            results.append({"EvalActionName": action, "EvalResourceName": resource,
                            "EvalDecision": _DECISIONS.get(verdict, "implicitDeny"), "MatchedStatements": [],
                            "MissingContextValues": []})
    return ActionResult({"EvaluationResults": results, "IsTruncated": False})


def apply() -> None:
    global _applied
    if _applied:
        return
    FakeEndpointConfig.validate_instance_type = _accept_any_instance_type
    sqs_models.unix_time = _unix_time
    sqs_models.unix_time_millis = _unix_time_millis
    FakeModel.response_object = property(_model_response_without_empty_members)
    IamResponse.simulate_principal_policy = _simulate_principal_policy
    _applied = True
