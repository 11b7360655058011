"""model.tar.gz packing (deterministic, SageMaker layout) and safe unpacking."""

from __future__ import annotations

import io
import os
import tarfile
from importlib import resources

import joblib
import pytest

from mf_sm_async.errors import ConfigError, DeployError
from mf_sm_async.model import package_directory, package_estimator, unpack_model


def members(archive) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(archive, name: str) -> bytes:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.extractfile(name).read()


def make_handler_dir(root, handler: str = "def model_fn(model_dir):\n    return None\n"):
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(handler)
    (root / "code" / "requirements.txt").write_text("numpy\n")
    (root / "weights.bin").write_bytes(os.urandom(1000))
    return root


def test_estimator_archive_has_sagemaker_layout(tmp_path, iris, iris_model):
    archive = package_estimator(iris_model, tmp_path / "build")
    assert archive == tmp_path / "build" / "model.tar.gz"
    assert sorted(members(archive)) == ["code/inference.py", "model.joblib"]
    handler_source = resources.files("mf_sm_async.serving").joinpath("sklearn_inference.py").read_bytes()
    assert read_member(archive, "code/inference.py") == handler_source
    loaded = joblib.load(io.BytesIO(read_member(archive, "model.joblib")))
    X = iris.data.to_numpy()
    assert loaded.predict(X).tolist() == iris_model.predict(X).tolist()


def test_same_estimator_gives_byte_identical_archives(tmp_path, iris_model):
    first = package_estimator(iris_model, tmp_path / "a").read_bytes()
    second = package_estimator(iris_model, tmp_path / "b").read_bytes()
    assert first == second
    assert first[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime


def test_member_metadata_is_normalised(tmp_path, iris_model):
    for member in members(package_estimator(iris_model, tmp_path)).values():
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
        assert member.isfile() and member.mode == 0o644


def test_directory_archive_does_not_depend_on_file_times_or_walk_order(tmp_path):
    source = make_handler_dir(tmp_path / "src")
    first = package_directory(source, tmp_path / "a").read_bytes()
    for i, path in enumerate(sorted(source.rglob("*"))):
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    (source / "code" / "__pycache__").mkdir()
    (source / "code" / "__pycache__" / "inference.cpython-311.pyc").write_bytes(b"compiled")
    second = package_directory(source, tmp_path / "b").read_bytes()
    assert first == second


def test_directory_archive_holds_every_file_at_its_relative_path(tmp_path):
    source = make_handler_dir(tmp_path / "src")
    (source / "code" / "run.sh").write_text("#!/bin/sh\n")
    (source / "code" / "run.sh").chmod(0o700)
    archive = package_directory(source, tmp_path / "out")
    found = members(archive)
    assert sorted(found) == ["code/inference.py", "code/requirements.txt", "code/run.sh", "weights.bin"]
    assert read_member(archive, "weights.bin") == (source / "weights.bin").read_bytes()
    assert found["code/run.sh"].mode == 0o755


def test_packaging_a_directory_into_itself_leaves_the_old_archive_out(tmp_path):
    source = make_handler_dir(tmp_path / "src")
    first = package_directory(source, source).read_bytes()
    second = package_directory(source, source).read_bytes()
    assert first == second
    assert "model.tar.gz" not in members(source / "model.tar.gz")
    assert [p.name for p in source.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_directory_without_handler_names_code_inference_py(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "inference.py").write_text("")  # at the root, not in code/
    with pytest.raises(ConfigError, match=r"code/inference\.py") as raised:
        package_directory(tmp_path / "src", tmp_path / "out")
    assert raised.value.field == "path"
    assert not (tmp_path / "out" / "model.tar.gz").exists()


def test_object_without_predict_is_a_config_error_on_model():
    with pytest.raises(ConfigError, match=r"predict\(\) method") as raised:
        package_estimator({"weights": [1, 2]}, "unused")
    assert raised.value.field == "model"


def test_unpicklable_estimator_is_a_config_error_that_says_why(tmp_path):
    class Local:  # defined in a function: pickle cannot find it again
        def predict(self, X):
            return X

    with pytest.raises(ConfigError, match="joblib can pickle") as raised:
        package_estimator(Local(), tmp_path)
    assert "joblib.dump failed" in str(raised.value)
    assert not (tmp_path / "model.tar.gz").exists()
    assert list(tmp_path.iterdir()) == []


def test_unpack_lays_out_the_model_directory(tmp_path, iris, iris_model):
    model_dir = unpack_model(package_estimator(iris_model, tmp_path / "build"), tmp_path / "instance")
    assert (model_dir / "code" / "inference.py").is_file()
    X = iris.data.to_numpy()
    assert joblib.load(model_dir / "model.joblib").predict(X).tolist() == iris_model.predict(X).tolist()


def _archive_with(path, *infos: tuple[tarfile.TarInfo, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in infos:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize(
    "evil",
    [_file("../escaped.txt"), _file("/tmp/mf-sm-async-absolute.txt"), _symlink("code/link", "/etc/passwd")],
    ids=["dotdot", "absolute", "symlink-out"],
)
def test_unpack_refuses_members_that_escape_and_writes_nothing(tmp_path, evil):
    archive = _archive_with(tmp_path / "evil.tar.gz", (_file("model.joblib"), b"ok"), (evil, b"bad"))
    with pytest.raises(DeployError, match="unsafe member"):
        unpack_model(archive, tmp_path / "instance")
    assert list((tmp_path / "instance").iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_unpack_of_a_corrupt_archive_is_a_deploy_error(tmp_path):
    (tmp_path / "model.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DeployError, match="could not be unpacked"):
        unpack_model(tmp_path / "model.tar.gz", tmp_path / "instance")
