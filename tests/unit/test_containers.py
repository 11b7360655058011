"""How the emulator runs an image: the local command it plans for each kind of image, the image -> command
mapping for other images, and what a container that cannot start says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mf_sm_async.local import containers
from mf_sm_async.local.containers import ContainerUnavailable, plan_launch
from mf_sm_async.local.instances import InstanceFailed

XGB = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@pytest.fixture
def mapping(tmp_path, monkeypatch):
    """Write the images file the daemon would read; no environment mapping."""
    path = tmp_path / "images.json"
    monkeypatch.setenv(containers.IMAGES_FILE_ENV, str(path))
    monkeypatch.delenv(containers.IMAGE_COMMANDS_ENV, raising=False)
    return path


@pytest.fixture
def unpack(tmp_path):
    """The runtime's unpack: each URL gets a directory of its own (code/ inside for model tarballs)."""
    seen = []

    def unpack(url, field):
        seen.append((url, field))
        folder = tmp_path / f"unpacked-{len(seen)}"
        (folder / "code").mkdir(parents=True)
        return folder
    unpack.seen = seen
    return unpack


def options(launch) -> dict:
    argv = list(launch.argv)
    return {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}


def test_builtin_xgboost_runs_the_algorithm_server_of_its_version(unpack, mapping):
    launch = plan_launch(XGB, {}, "s3://b/model.tar.gz", unpack)
    assert launch.argv[1:3] == ("-m", "mf_sm_async.local.model_server") and launch.announces_port
    assert options(launch)["--container"] == "xgboost" and options(launch)["--container-version"] == "1.7-1"
    assert "--code-dir" not in options(launch)


def test_xgboost_with_an_entry_point_and_sklearn_run_script_mode_from_the_submit_directory(unpack, mapping):
    env = {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": "s3://b/code/sourcedir.tar.gz"}
    launch = plan_launch(XGB, env, "s3://b/model.tar.gz", unpack)
    assert options(launch)["--container"] == "xgboost"
    assert unpack.seen[-1] == ("s3://b/code/sourcedir.tar.gz", "SAGEMAKER_SUBMIT_DIRECTORY")
    assert options(launch)["--code-dir"].endswith("unpacked-2")
    in_model = plan_launch(SKLEARN, {"SAGEMAKER_PROGRAM": "inference.py",
                                     "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}, "s3://b/m.tar.gz", unpack)
    assert options(in_model)["--container"] == "sklearn"
    assert Path(options(in_model)["--code-dir"]) == Path(options(in_model)["--model-dir"]) / "code"


@pytest.mark.parametrize("env,words", [
    ({}, ["SAGEMAKER_PROGRAM", "no default"]),
    ({"SAGEMAKER_PROGRAM": "inference.py"}, ["SAGEMAKER_SUBMIT_DIRECTORY is not set", "/opt/ml/code"]),
    ({"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/code"},
     ["SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/code", "/opt/ml/model/code"]),
])
def test_the_sklearn_image_without_a_usable_entry_point_cannot_start(unpack, mapping, env, words):
    with pytest.raises(InstanceFailed) as error:
        plan_launch(SKLEARN, env, "s3://b/m.tar.gz", unpack)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_an_unmapped_image_names_itself_and_both_ways_to_map_it(unpack, mapping):
    with pytest.raises(ContainerUnavailable) as error:
        plan_launch("my/image:1", {}, None, unpack)
    reason = str(error.value)
    assert "'my/image:1'" in reason and str(mapping) in reason and containers.IMAGE_COMMANDS_ENV in reason


def test_an_exact_key_beats_a_glob_and_the_longest_glob_wins(unpack, mapping, monkeypatch):
    mapping.write_text(json.dumps({"*": "generic {port}", "my/*": "mine {port}", "my/image:*": "image {port}",
                                   "my/image:1": ["exact", "--port", "{port}", "--dir", "{model_dir}"]}))
    assert containers.mapped_command("my/image:1") == ["exact", "--port", "{port}", "--dir", "{model_dir}"]
    assert containers.mapped_command("my/image:2") == ["image", "{port}"]
    assert containers.mapped_command("my/other") == ["mine", "{port}"]
    monkeypatch.setenv(containers.IMAGE_COMMANDS_ENV, json.dumps({"my/image:2": "from env {port}"}))
    assert containers.mapped_command("my/image:2") == ["from", "env", "{port}"]  # the environment wins
    launch = plan_launch("my/image:1", {}, None, unpack)
    assert not launch.announces_port and launch.env == {"SAGEMAKER_BIND_TO_PORT": "{port}"}
    assert launch.argv[-5:] == ("exact", "--port", "{port}", "--dir", str(launch.cwd))  # under the supervisor


@pytest.mark.parametrize("text", ["{not json", '["a list"]', '{"my/image": 5}'])
def test_a_broken_mapping_file_fails_the_endpoint_naming_the_file(unpack, mapping, text):
    mapping.write_text(text)
    with pytest.raises(ContainerUnavailable, match=str(mapping)):
        plan_launch("my/image:1", {}, None, unpack)


def test_without_xgboost_the_builtin_image_says_how_to_install_it(tmp_path):
    (tmp_path / "xgboost-model").write_bytes(b"{}")
    # None in sys.modules makes `import xgboost` fail, as in an environment without it
    code = ("import sys; sys.modules['xgboost'] = None; from mf_sm_async.local.model_server import main; "
            f"sys.exit(main(['--model-dir', {str(tmp_path)!r}, '--port', '0', '--container', 'xgboost']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "pip install xgboost-cpu" in result.stderr.strip().splitlines()[-1]


def test_a_mapped_command_dies_with_its_supervisor(tmp_path):
    import os
    import signal
    import time

    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    supervisor = subprocess.Popen([sys.executable, "-m", "mf_sm_async.local.containers", "--", sys.executable, "-c",
                                   child])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the mapped command did not start"
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    supervisor.send_signal(signal.SIGKILL)  # not even a chance to clean up: the kernel takes the child down
    supervisor.wait(10)
    try:
        while True:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().split(")")[-1].split()[0] == "Z":  # dead, not yet reaped by its new parent
                        break
            except FileNotFoundError:
                break
            assert time.monotonic() < deadline + 30, "the mapped command outlived its supervisor"
            time.sleep(0.05)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)  # a failed test leaves nothing running
        except ProcessLookupError:
            pass
