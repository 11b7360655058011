"""Packaging a model as SageMaker's ``model.tar.gz``, and unpacking one for a local endpoint instance.

A model.tar.gz holds at its root the artifacts the handler's ``model_fn`` loads and ``code/inference.py``,
the handler (sagemaker-inference-toolkit conventions); SageMaker unpacks it to ``/opt/ml/model``. AWS's
scikit-learn image imports the handler only when the model's Environment names it:
``SAGEMAKER_PROGRAM=inference.py`` and ``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code``
(``mf_sm_async.images.SCRIPT_IN_MODEL_ENV``; ``AsyncEndpoint.deploy`` sets them).

Packing is deterministic: members sorted by name, mtime 0, uid/gid 0, no owner names, normalised modes,
gzip header without name or time. The same input bytes give the same archive bytes, so the archive's
hash can identify a model.

Example::

    >>> import tarfile, tempfile
    >>> from sklearn.linear_model import LogisticRegression
    >>> build = tempfile.mkdtemp()
    >>> archive = package_estimator(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), build)
    >>> sorted(tarfile.open(archive).getnames())
    ['code/inference.py', 'model.joblib']
    >>> model_dir = unpack_model(archive, build + "/instance-1")
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

from mf_sm_async.errors import ConfigError, DeployError

ARCHIVE_NAME = "model.tar.gz"
HANDLER_PATH = "code/inference.py"
ESTIMATOR_FILENAME = "model.joblib"
_SKIPPED_DIRS = {"__pycache__"}  # interpreter caches would make the archive depend on what ran locally


def package_estimator(estimator, dest_dir: str | os.PathLike) -> Path:
    """Write ``DEST/model.tar.gz`` holding ``model.joblib`` and the default scikit-learn handler.

    The handler is ``mf_sm_async/serving/sklearn_inference.py``; see it for the payload formats served.
    Raises ``ConfigError`` (field ``model``) if the object has no ``predict`` or cannot be pickled.
    """
    if not callable(getattr(estimator, "predict", None)):
        raise ConfigError(
            "model", type(estimator), "an object with a predict() method, e.g. a fitted scikit-learn estimator"
        )
    import joblib

    handler = resources.files("mf_sm_async.serving").joinpath("sklearn_inference.py").read_bytes()
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".package-") as staging:
        saved = Path(staging) / ESTIMATOR_FILENAME
        try:
            joblib.dump(estimator, saved)
        except Exception as exc:
            raise ConfigError(
                "model", type(estimator), "an object joblib can pickle", hint=f"joblib.dump failed: {exc}"
            ) from exc
        return _write_archive(dest, [(ESTIMATOR_FILENAME, saved), (HANDLER_PATH, handler)])


def package_directory(path: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Write ``DEST/model.tar.gz`` from a directory holding ``code/inference.py`` and any artifacts.

    Every file under ``path`` goes in at its relative path (``__pycache__`` and ``*.pyc`` left out,
    symlinks followed, empty directories dropped). Raises ``ConfigError`` (field ``path``) when
    ``path/code/inference.py`` is missing.
    """
    root = Path(path)
    if not (root / HANDLER_PATH).is_file():
        raise ConfigError(
            "path", str(path), f"a directory that contains {HANDLER_PATH}",
            hint="put the handler (model_fn, and input_fn/predict_fn/output_fn or transform_fn) in code/inference.py",
        )
    dest = Path(dest_dir)
    target = (dest / ARCHIVE_NAME).resolve()
    members: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]
        for name in filenames:
            file = Path(dirpath) / name
            if name.endswith(".pyc") or not file.is_file() or file.resolve() == target:
                continue
            members.append((file.relative_to(root).as_posix(), file))
    return _write_archive(dest, members)


def unpack_model(tar_path: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Extract a model.tar.gz into ``dest_dir`` (created if needed) and return it.

    Refuses the whole archive, before writing anything, if any member would land outside ``dest_dir``
    (absolute paths, ``..``, links pointing out) or is a device file: ``DeployError``.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = tar.getmembers()
            for member in members:  # check all first so a bad archive leaves nothing behind
                if member.name.startswith("/"):  # the data filter would strip the "/"; refuse instead
                    raise tarfile.AbsolutePathError(member)
                tarfile.data_filter(member, str(dest))
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise DeployError(
            f"{tar_path} was not unpacked: unsafe member {exc.tarinfo.name!r} ({exc})",
            hint="build the archive with package_estimator() or package_directory()",
        ) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DeployError(f"{tar_path} could not be unpacked: {exc}") from exc
    return dest


def _write_archive(dest: Path, members: list[tuple[str, Path | bytes]]) -> Path:
    """Write the archive under a temporary name and rename it, so no reader sees half an archive."""
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".tar.gz.partial", dir=dest)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6
        ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for arcname, source in sorted(members, key=lambda member: member[0]):
                info = tarfile.TarInfo(arcname)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if isinstance(source, bytes):
                    info.size, info.mode = len(source), 0o644
                    tar.addfile(info, io.BytesIO(source))
                else:
                    stat = source.stat()
                    info.size, info.mode = stat.st_size, 0o755 if stat.st_mode & 0o111 else 0o644
                    with source.open("rb") as stream:
                        tar.addfile(info, stream)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the archive is no secret
        os.replace(tmp, dest / ARCHIVE_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest / ARCHIVE_NAME


# --------------------------------------------------------------------------------------------------
# What a user hands to AsyncEndpoint.deploy(model=...)

_S3_TARBALL = "s3://"


class ModelSource:
    """A model spec resolved: a local tarball to upload or an S3 tarball, a readable stem, a digest.

    - a fitted estimator (anything with ``predict``): packaged with our default handler;
    - a directory holding ``code/inference.py``: packaged as it is;
    - ``s3://.../model.tar.gz``: used in place (needs an image on AWS);
    - any other string: the name of an existing SageMaker model.
    """

    def __init__(self, *, tarball: Path | None = None, s3_uri: str | None = None, model_name: str | None = None,
                 stem: str, digest: str, sklearn_version: str | None = None):
        self.sklearn_version = sklearn_version  # of a packaged estimator: picks the AWS image
        self.tarball = tarball
        self.s3_uri = s3_uri
        self.model_name = model_name
        self.stem = stem
        self.digest = digest


def _stem(text: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    return cleaned[:30].strip("-") or "model"


def _digest(path: Path) -> str:
    import hashlib

    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _sklearn_version(model) -> str | None:
    """The scikit-learn version a scikit-learn estimator is pickled with (None for other estimators)."""
    try:
        import sklearn
        from sklearn.base import BaseEstimator
    except ImportError:
        return None
    return sklearn.__version__ if isinstance(model, BaseEstimator) else None


def resolve_model(model, work_dir: str | os.PathLike) -> ModelSource:
    """Turn ``model`` into a :class:`ModelSource`, packaging it under ``work_dir`` when needed."""
    if hasattr(model, "predict") and not isinstance(model, (str, os.PathLike)):
        tarball = package_estimator(model, work_dir)
        return ModelSource(tarball=tarball, stem=_stem(type(model).__name__), digest=_digest(tarball),
                           sklearn_version=_sklearn_version(model))
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        tarball = package_directory(model, work_dir)
        return ModelSource(tarball=tarball, stem=_stem(Path(model).resolve().name), digest=_digest(tarball))
    if isinstance(model, str) and model.startswith(_S3_TARBALL):
        if not model.endswith(".tar.gz") or len(model) <= len(_S3_TARBALL) + len(".tar.gz"):
            raise ConfigError("model", model, "an s3:// URI of a model.tar.gz")
        import hashlib

        return ModelSource(s3_uri=model, stem=_stem(model.rsplit("/", 2)[-2] if model.count("/") > 3 else "model"),
                           digest=hashlib.sha256(model.encode()).hexdigest())
    if isinstance(model, str) and model and "/" not in model and not model.startswith("."):
        import hashlib

        return ModelSource(model_name=model, stem=_stem(model), digest=hashlib.sha256(model.encode()).hexdigest())
    raise ConfigError("model", model if isinstance(model, str) else type(model).__name__,
                      "a fitted estimator with predict(), a directory holding code/inference.py, an s3:// URI of "
                      "a model.tar.gz, or the name of an existing SageMaker model")
