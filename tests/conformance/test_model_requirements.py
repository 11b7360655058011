"""A model directory's code/requirements.txt is installed before its server starts, as SageMaker's
framework containers do; a requirement pip cannot install fails the endpoint with pip's own words."""

import base64
import hashlib
import json
import time
import zipfile
from pathlib import Path

from mf_sm_async.model import package_directory

from .conftest import create_deployment

HANDLER = '''
import mfsa_greeting


def model_fn(model_dir):
    return mfsa_greeting


def predict_fn(data, model, context=None):
    return model.greet(data.decode() if isinstance(data, bytes) else data)


def input_fn(data, content_type, context=None):
    return data


def output_fn(prediction, accept, context=None):
    return prediction.encode(), "text/plain"
'''


def make_wheel(folder: Path) -> Path:
    """A one-module wheel built by hand, so pip installs it from the file with no network."""
    name, version = "mfsa_greeting", "1.0"
    files = {f"{name}.py": b"def greet(who):\n    return 'hello ' + who\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
                     for path, data in files.items())
    files[f"{name}-{version}.dist-info/RECORD"] = (record + f"{name}-{version}.dist-info/RECORD,,\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def wait_for_endpoint(clients, name: str, timeout: float = 120.0) -> str:
    """The endpoint's status once it has left Creating."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = clients.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
        if status != "Creating":
            return status
        time.sleep(0.5)
    return status


def model_dir(tmp_path: Path, requirements: str) -> Path:
    root = tmp_path / "model"
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(HANDLER)
    make_wheel(root / "code")
    (root / "code" / "requirements.txt").write_text(requirements)
    return package_directory(root, tmp_path / "pkg")


def test_requirements_are_installed_before_the_model_loads(clients, tmp_path):
    # numpy is already there (nothing to fetch); the wheel is not.
    dep = create_deployment(clients, tmp_path, model_dir(tmp_path, "numpy\n./mfsa_greeting-1.0-py3-none-any.whl\n"),
                            wait=False)
    assert wait_for_endpoint(clients, dep.name) == "InService", \
        clients.sagemaker.describe_endpoint(EndpointName=dep.name).get("FailureReason")
    clients.s3.put_object(Bucket=dep.bucket, Key="in/who", Body=b"world")
    answer = clients.sagemaker_runtime.invoke_endpoint_async(EndpointName=dep.name, InputLocation=f"s3://{dep.bucket}/in/who")
    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Completed", note
    assert dep.read(answer["OutputLocation"]) == b"hello world"


def test_a_requirement_pip_cannot_install_fails_the_endpoint_with_pips_message(clients, tmp_path):
    dep = create_deployment(clients, tmp_path, model_dir(tmp_path, "./no-such-file.whl\n"), wait=False)
    assert wait_for_endpoint(clients, dep.name) == "Failed"
    described = clients.sagemaker.describe_endpoint(EndpointName=dep.name)
    assert "requirements.txt" in described["FailureReason"]
    assert "no-such-file.whl" in described["FailureReason"], json.dumps(described, default=str)
