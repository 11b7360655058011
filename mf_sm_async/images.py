"""Which SageMaker framework image serves a model on AWS: the scikit-learn image whose version matches
the scikit-learn the model was pickled with (a newer local version often fails to unpickle on an older
image). The lookup is the sagemaker SDK's own (``image_uris.retrieve``), from the ``sagemaker`` extra."""

from __future__ import annotations

import logging

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
