"""The sagemaker Python SDK's own config file for the emulator, so the SDK's documented flows run offline.

The SDK (v2 and v3) honours ``AWS_ENDPOINT_URL`` for every client but one: whenever it needs the account id
(``Session.default_bucket()`` naming ``sagemaker-<region>-<account>``, ``Session.account_id()``) it builds an
STS client with an explicit ``https://sts.<region>.amazonaws.com`` endpoint, which no environment variable
redirects. Its config file can name the default bucket instead (``SageMaker.PythonSDK.Modules.Session.
DefaultS3Bucket``), and then the SDK asks STS nothing: it only looks the bucket up in S3 (our emulator's)
and creates it when missing. The same file sets ``TelemetryOptOut`` (the SDK otherwise sends a usage ping
to a fixed S3 host after its decorated calls).

v3 also checks the execution role client side before CreateModel (``iam:SimulatePrincipalPolicy`` on the role,
then its trust policy). The emulator answers both (see :mod:`.moto_patches`), but the role a user's code names
exists in their real account, not in the emulator's IAM, so the check would refuse it; and the emulator runs
nothing as that role and enforces no IAM, so there is nothing for the check to protect.
``SAGEMAKER_VALIDATE_ROLE=false`` (the SDK's own switch) turns it off; unset it to check a role created in the
emulator.
"""

from __future__ import annotations

from pathlib import Path

from moto.core import DEFAULT_ACCOUNT_ID

from ..aws import LOCAL_REGION

CONFIG_FILE = "sagemaker-sdk-config.yaml"
# The name the SDK itself would derive from STS (sagemaker-<region>-<account>) for the emulator's account.
DEFAULT_BUCKET = f"sagemaker-{LOCAL_REGION}-{DEFAULT_ACCOUNT_ID}"

_CONFIG = f"""\
# Written by mf-sm-async for its local emulator: read by the sagemaker SDK through
# SAGEMAKER_USER_CONFIG_OVERRIDE (see `mf-sm-async local env`).
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
      Session:
        DefaultS3Bucket: {DEFAULT_BUCKET}
"""


def write_config(state_dir: Path) -> Path:
    """Write the SDK config file under ``state_dir`` (idempotent) and return its path."""
    path = Path(state_dir) / CONFIG_FILE
    if not path.exists() or path.read_text() != _CONFIG:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_CONFIG)
        tmp.replace(path)
    return path


def sdk_env(state_dir: Path) -> dict[str, str]:
    """The environment variables that let the sagemaker SDK run against the emulator offline."""
    return {"SAGEMAKER_USER_CONFIG_OVERRIDE": str(write_config(state_dir)), "SAGEMAKER_VALIDATE_ROLE": "false"}
