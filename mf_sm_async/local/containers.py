"""How the emulator runs a model's container image: which local process serves each instance.

``PrimaryContainer.Image`` decides, read by :func:`mf_sm_async.images.parse_image_uri` (any region,
account, partition or tag form):

- ``.../sagemaker-xgboost:<version>`` (what ``image_uris.retrieve("xgboost", ...)`` returns, 0.90-1 to
  the current versions): without ``SAGEMAKER_PROGRAM`` the built-in algorithm, serving the
  ``xgboost-model`` at the top of model.tar.gz (:mod:`mf_sm_async.serving.xgboost_container`); with it,
  script mode as below, with XGBoost's defaults.
- ``.../sagemaker-scikit-learn:<version>``: script mode (:mod:`mf_sm_async.serving.framework_container`).
  The entry point is ``SAGEMAKER_PROGRAM``, found in ``SAGEMAKER_SUBMIT_DIRECTORY``: an
  ``s3://.../sourcedir.tar.gz`` (downloaded from the emulator's S3 like ModelDataUrl) or
  ``/opt/ml/model/code`` (``code/`` inside model.tar.gz). The container has no default for either, so
  neither has the emulator: the endpoint goes Failed naming what is missing.
- ``mf-sm-async/local-handler:<tag>`` (the package's own local deploys): ``code/inference.py`` of
  model.tar.gz with the toolkit-style server (:mod:`mf_sm_async.local.model_server`).
- any other image: the local command mapped to it, or the endpoint goes Failed saying how to map one.

A ``requirements.txt`` in the code directory is installed first, as the framework containers do
(:mod:`mf_sm_async.local.model_env`).

Mapping other images to local commands
--------------------------------------

The daemon reads the mapping whenever it starts instances (CreateEndpoint, UpdateEndpoint, scaling out),
so an edit needs no restart, from

1. ``$MF_SM_ASYNC_IMAGE_COMMANDS`` in the daemon's environment: a JSON object, and
2. the JSON file ``$MF_SM_ASYNC_IMAGES_FILE`` (default ``$MF_SM_ASYNC_HOME/images.json``, i.e.
   ``~/.mf_sm_async/images.json``); the environment variable wins on the same key.

Each key is an image URI, exact or a glob (``*`` and ``?``, e.g. ``*.amazonaws.com/pytorch-inference:*``;
an exact key wins, then the longest matching pattern). Each value is the command that serves the
container contract (``GET /ping``, ``POST /invocations``) on a port, as a string (split like a shell
would, no shell features) or a list of arguments. ``{port}`` and ``{model_dir}`` in it become the port
the instance must listen on (127.0.0.1) and the unpacked model.tar.gz (SageMaker's ``/opt/ml/model``;
empty without ModelDataUrl). The process runs in ``{model_dir}`` with the model's Environment plus
``SAGEMAKER_BIND_TO_PORT={port}``, and is stopped (SIGTERM, then SIGKILL) with its instance or when the
daemon dies. Example ``images.json`` serving PyTorch-style ``code/inference.py`` handlers with the
emulator's own toolkit-style server::

    {"763104351884.dkr.ecr.*.amazonaws.com/pytorch-inference:*":
        "python -m mf_sm_async.local.model_server --model-dir {model_dir} --port {port}"}
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from ..images import LOCAL_HANDLER, LOCAL_HANDLER_IMAGE, OTHER, SKLEARN, XGBOOST, ContainerImage, parse_image_uri
from .instances import InstanceFailed, Launch
from .model_env import model_python
from .processes import die_with_parent

IMAGE_COMMANDS_ENV = "MF_SM_ASYNC_IMAGE_COMMANDS"
IMAGES_FILE_ENV = "MF_SM_ASYNC_IMAGES_FILE"
MODEL_DIR_IN_CONTAINER = "/opt/ml/model"


class ContainerUnavailable(InstanceFailed):
    """The emulator cannot run this image at all; the message is the endpoint's whole FailureReason."""


def images_file() -> Path:
    explicit = os.environ.get(IMAGES_FILE_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("MF_SM_ASYNC_HOME") or Path.home() / ".mf_sm_async") / "images.json"


def _read_mapping(text: str, source: str) -> dict:
    try:
        mapping = json.loads(text)
    except ValueError as exc:
        raise ContainerUnavailable(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(mapping, dict) or not all(
            isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(a, str) for a in v))
            for v in mapping.values()):
        raise ContainerUnavailable(f"{source} must be a JSON object mapping image URIs to a command (a string or "
                                   "a list of strings)")
    return mapping


def image_commands() -> dict[str, str | list[str]]:
    """The configured image -> command mapping (see the module docstring)."""
    mapping: dict = {}
    path = images_file()
    if path.is_file():
        mapping.update(_read_mapping(path.read_text(), str(path)))
    if os.environ.get(IMAGE_COMMANDS_ENV):
        mapping.update(_read_mapping(os.environ[IMAGE_COMMANDS_ENV], f"${IMAGE_COMMANDS_ENV}"))
    return mapping


def mapped_command(uri: str) -> list[str] | None:
    """The command mapped to ``uri`` (exact key first, then the longest matching glob), or None."""
    mapping = image_commands()
    command = mapping.get(uri)
    if command is None:
        patterns = sorted((k for k in mapping if any(c in k for c in "*?[") and fnmatch.fnmatchcase(uri, k)),
                          key=len, reverse=True)
        command = mapping[patterns[0]] if patterns else None
    if command is None:
        return None
    return shlex.split(command) if isinstance(command, str) else list(command)


def no_mapping_reason(uri: str) -> str:
    example = json.dumps({uri: "python -m my_server --port {port} --model-dir {model_dir}"})
    return (f"The emulator cannot run image '{uri}': it serves the sagemaker-xgboost and sagemaker-scikit-learn "
            f"images itself and any other image through a local command mapped to it, and none is. Add one to "
            f"{images_file()} (read whenever instances start), e.g. {example} "
            f"- or set {IMAGE_COMMANDS_ENV} to such a JSON object in the daemon's environment - where the "
            "command serves GET /ping and POST /invocations on 127.0.0.1:{port}; then delete and create the "
            "endpoint again.")


def _model_server(python: str, model_dir: Path, *options: str) -> Launch:
    return Launch((python, "-m", "mf_sm_async.local.model_server", "--model-dir", str(model_dir), "--port", "0",
                   *options), cwd=model_dir)


def _code_dir(env: dict, model_dir: Path, unpack: Callable[[str, str], Path], kind: str) -> Path:
    """Where SAGEMAKER_SUBMIT_DIRECTORY puts the entry point, locally."""
    framework = {SKLEARN: "scikit-learn", XGBOOST: "XGBoost"}[kind]
    submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY")
    if not env.get("SAGEMAKER_PROGRAM"):
        raise InstanceFailed(
            f"the {framework} framework container has no entry point: the model's Environment does not set "
            "SAGEMAKER_PROGRAM, and the container's server has no default (it fails every request, /ping "
            "included). Set SAGEMAKER_PROGRAM=inference.py and SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code "
            "(code/ inside model.tar.gz) or s3://.../sourcedir.tar.gz")
    if not submit:
        raise InstanceFailed(
            f"SAGEMAKER_PROGRAM={env['SAGEMAKER_PROGRAM']} but SAGEMAKER_SUBMIT_DIRECTORY is not set: the "
            f"{framework} container then looks in /opt/ml/code, which is empty in a serving container. Set it "
            "to /opt/ml/model/code (code/ inside model.tar.gz) or s3://.../sourcedir.tar.gz")
    if submit.startswith("s3://"):
        return unpack(submit, "SAGEMAKER_SUBMIT_DIRECTORY")
    inside = os.path.normpath(submit)
    if inside == MODEL_DIR_IN_CONTAINER or inside.startswith(MODEL_DIR_IN_CONTAINER + "/"):
        return model_dir / os.path.relpath(inside, MODEL_DIR_IN_CONTAINER)
    raise InstanceFailed(f"SAGEMAKER_SUBMIT_DIRECTORY={submit} is a path inside the container that only "
                         f"{MODEL_DIR_IN_CONTAINER} (the unpacked model.tar.gz) maps to locally: use "
                         f"{MODEL_DIR_IN_CONTAINER}/code or an s3:// sourcedir.tar.gz")


def plan_launch(image_uri: str | None, env: dict, model_data_url: str | None,
                unpack: Callable[[str | None, str], Path]) -> Launch:
    """The :class:`Launch` of a model's container. ``unpack(url, field)`` downloads and unpacks an
    ``s3://`` tarball once (an empty directory for ``None``) and returns the directory; it and this raise
    :class:`InstanceFailed` (the endpoint goes Failed with the message)."""
    image: ContainerImage = parse_image_uri(image_uri or LOCAL_HANDLER_IMAGE)
    if image.kind == OTHER:
        command = mapped_command(image.uri)
        if command is None:
            raise ContainerUnavailable(no_mapping_reason(image.uri))
        model_dir = unpack(model_data_url, "ModelDataUrl")
        argv = tuple(arg.replace("{model_dir}", str(model_dir)) for arg in command)
        supervised = (sys.executable, "-m", "mf_sm_async.local.containers", "--", *argv)
        return Launch(supervised, cwd=model_dir, env={"SAGEMAKER_BIND_TO_PORT": "{port}"}, announces_port=False)
    if model_data_url is None and (image.kind == LOCAL_HANDLER or
                                   (image.kind == XGBOOST and not env.get("SAGEMAKER_PROGRAM"))):
        what = "xgboost-model" if image.kind == XGBOOST else "code/inference.py"
        raise InstanceFailed(f"the model has no ModelDataUrl: image {image.uri} serves a model.tar.gz holding {what}")
    model_dir = unpack(model_data_url, "ModelDataUrl")
    if image.kind == LOCAL_HANDLER:
        return _model_server(model_python(model_dir / "code"), model_dir)
    version = ("--container-version", image.version) if image.version else ()
    if image.kind == XGBOOST and not env.get("SAGEMAKER_PROGRAM"):
        return _model_server(sys.executable, model_dir, "--container", "xgboost", *version)
    framework = SKLEARN if image.kind == SKLEARN else XGBOOST
    code_dir = _code_dir(env, model_dir, unpack, framework)
    return _model_server(model_python(code_dir), model_dir, "--container", framework, "--code-dir", str(code_dir),
                         *version)


# ---------------------------------------------------------------------------------------------------
# A mapped command runs under this small supervisor: the command is not ours, so it does not watch the
# daemon the way our model server does; the supervisor does, and takes the command down with it.

def _supervise(argv: list[str]) -> int:
    parent = os.getppid()
    try:
        # the kernel kills the command when the (single-threaded) supervisor dies, even by SIGKILL (Linux only:
        # elsewhere only a supervisor that exits cleanly stops it)
        child = subprocess.Popen(argv, preexec_fn=die_with_parent(signal.SIGKILL))
    except OSError as exc:
        print(f"model server failed: cannot run {argv[0]!r}: {exc}", file=sys.stderr, flush=True)
        return 3

    def stop(signum=None, frame=None):
        child.terminate()
        try:
            child.wait(3)
        except subprocess.TimeoutExpired:
            child.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while child.poll() is None:
        if os.getppid() != parent:
            stop()
        time.sleep(0.5)
    return child.returncode


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(_supervise(args[1:] if args[:1] == ["--"] else args))
