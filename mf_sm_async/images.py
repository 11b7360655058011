"""SageMaker container images: which one serves a model on AWS, and what an image URI names.

- The AWS image for a packaged estimator is the scikit-learn image whose version matches the
  scikit-learn the model was pickled with (a newer local version often fails to unpickle on an older
  image). The lookup is the sagemaker SDK's own (``image_uris.retrieve``), from the ``sagemaker`` extra.
- :func:`parse_image_uri` tells the built-in XGBoost image, the scikit-learn framework image and our own
  local-handler image apart from any other, in any region / account / tag form; the emulator serves
  each the way its container does (see ``mf_sm_async/local/containers.py``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from .errors import DeployError

log = logging.getLogger(__name__)


def _image_uris():
    try:
        from sagemaker.core import image_uris  # SDK v3
    except ImportError:
        try:
            from sagemaker import image_uris  # SDK v2
        except ImportError:
            return None
    return image_uris


def image_versions() -> list[str] | None:
    """The scikit-learn image versions the installed SDK knows (``1.2-1``, ``1.9-0`` ...), or None."""
    image_uris = _image_uris()
    if image_uris is None:
        return None
    config = image_uris.config_for_framework("sklearn")
    return list(config.get("inference", config).get("versions", {}))


def matching_version(sklearn_version: str, versions: list[str]) -> str | None:
    """The image version for the same scikit-learn major.minor (``1.9.1`` -> ``1.9-0``)."""
    def major_minor(version: str) -> str:
        return ".".join(version.split("-")[0].split(".")[:2])

    found = [v for v in versions if major_minor(v) == major_minor(sklearn_version)]
    plain = [v for v in found if "-py" not in v]  # prefer the image's default Python over a -py312 flavour
    return (plain or found or [None])[-1]


def sklearn_image(sklearn_version: str, region: str, instance_type: str) -> str:
    """The AWS scikit-learn image for a model pickled with ``sklearn_version``, or a DeployError."""
    image_uris, versions = _image_uris(), image_versions()
    if image_uris is None:
        raise DeployError("no image for the AWS target: the sagemaker SDK is not installed to look one up",
                          "pip install 'mf-sm-async[sagemaker]', or pass image_uri=")
    version = matching_version(sklearn_version, versions)
    if version is None:
        raise DeployError(f"the model was pickled with scikit-learn {sklearn_version}, and no SageMaker "
                          f"scikit-learn image has that version (images: {', '.join(versions)})",
                          "train with a scikit-learn version an image has, or pass image_uri= of a "
                          "container that has yours")
    return image_uris.retrieve(framework="sklearn", region=region, version=version, instance_type=instance_type)


def warn_if_no_aws_image(sklearn_version: str) -> None:
    """On the emulator: say now what would fail on AWS later."""
    versions = image_versions()
    if versions is not None and matching_version(sklearn_version, versions) is None:
        log.warning("this model (scikit-learn %s) runs here, but AWS has no scikit-learn image of that version "
                    "(images: %s): on AWS it needs image_uri= of a container with it", sklearn_version,
                    ", ".join(versions))


# --------------------------------------------------------------------------------------------------
# What an image URI names

LOCAL_HANDLER_IMAGE = "mf-sm-async/local-handler:latest"
"""Our own image name: the emulator serves ``code/inference.py`` with its toolkit-style model server."""

# What the scikit-learn framework container needs to find a handler packed as code/inference.py in
# model.tar.gz: it imports SAGEMAKER_PROGRAM from SAGEMAKER_SUBMIT_DIRECTORY and has no default for either.
SCRIPT_IN_MODEL_ENV = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}

XGBOOST, SKLEARN, LOCAL_HANDLER, OTHER = "xgboost", "sklearn", "local-handler", "other"
_REPOSITORIES = {"sagemaker-xgboost": XGBOOST, "sagemaker-scikit-learn": SKLEARN}
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:[.-](\d+))?")
LEGACY_XGBOOST_VERSION = "0.72"  # the pre-framework ".../xgboost:1" image, served like the oldest one we know


@dataclass(frozen=True)
class ContainerImage:
    """An image URI read the way SageMaker picks a container: ``kind`` is ``"xgboost"`` (the built-in
    algorithm, ``.../sagemaker-xgboost:<version>``), ``"sklearn"`` (the scikit-learn framework image),
    ``"local-handler"`` (:data:`LOCAL_HANDLER_IMAGE`) or ``"other"``; ``version`` is the framework version
    the tag starts with (``1.7-1``, ``1.2-1``), None when the tag does not say (``latest``, a digest).

    Any registry, account, region or partition, any tag suffix, a digest::

        >>> parse_image_uri("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
        ContainerImage(uri='683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1', kind='xgboost', version='1.7-1')
        >>> parse_image_uri("450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:1.2-1-cpu-py3").version
        '1.2-1'
        >>> parse_image_uri("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310").kind
        'other'
    """

    uri: str
    kind: str
    version: str | None

    def version_at_least(self, version: str) -> bool:
        """True when this image's version is ``version`` or later; an image without one is the newest."""
        return self.version is None or version_key(self.version) >= version_key(version)


def version_key(version: str) -> tuple[int, int, int]:
    """``"1.7-1"`` -> ``(1, 7, 1)``; ``"0.20.0"`` -> ``(0, 20, 0)``; ``"0.72"`` -> ``(0, 72, 0)``."""
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"not a framework version: {version!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def parse_image_uri(uri: str) -> ContainerImage:
    """Read an image URI (see :class:`ContainerImage`); anything unrecognised is ``kind="other"``."""
    name = uri.split("@", 1)[0]
    path, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    segments = path.split("/")
    registry = segments[0] if len(segments) > 1 and ("." in segments[0] or ":" in segments[0]
                                                     or segments[0] == "localhost") else ""
    repository = "/".join(segments[1:] if registry else segments)
    if repository == LOCAL_HANDLER_IMAGE.split(":")[0]:
        return ContainerImage(uri, LOCAL_HANDLER, None)
    last = segments[-1]
    if last in _REPOSITORIES:
        match = _VERSION.match(tag)
        return ContainerImage(uri, _REPOSITORIES[last], match.group(0) if match else None)
    if last == "xgboost" and registry.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return ContainerImage(uri, XGBOOST, LEGACY_XGBOOST_VERSION)
    return ContainerImage(uri, OTHER, None)
