"""Build (or re-use) the virtual environment the sagemaker SDK v2 examples run in.

    python tests/sdk_v2/make_venv.py [PATH]     # prints the environment's python

PATH defaults to ``$MF_SM_ASYNC_SDK2_VENV``, else ``.venv-sdk2`` at the repository root. The environment holds
``requirements.txt`` only (sagemaker<3, xgboost-cpu, boto3, numpy, pytest), not this package: the examples reach
the emulator through the ``mf-sm-async`` command of the main environment, as a user's other environments would.
It is re-used while ``requirements.txt`` is unchanged (a stamp file records its hash); concurrent builds are
serialised by a lock. Standard library only: .ci/run calls it before the test run, and
tests/conformance/test_sagemaker_sdk_v2.py calls it when .ci/run has not.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
STAMP = "mf-sm-async-sdk2.stamp"


def default_path() -> Path:
    return Path(os.environ.get("MF_SM_ASYNC_SDK2_VENV") or HERE.parents[1] / ".venv-sdk2")


def ensure_venv(path: Path | None = None) -> Path:
    """The python of an environment at ``path`` holding requirements.txt, built if missing or stale."""
    path = Path(path or default_path()).resolve()
    python = path / "bin" / "python"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = path / STAMP
        if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
            return python
        stamp.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(wanted + "\n")
    return python


if __name__ == "__main__":
    print(ensure_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
