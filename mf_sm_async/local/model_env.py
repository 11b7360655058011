"""The Python environment a model's server runs in: the code directory's ``requirements.txt`` installed,
as SageMaker's framework containers do at start-up (``code/requirements.txt`` of model.tar.gz, or the root
of a ``sourcedir.tar.gz``).

Code without ``requirements.txt`` runs on the emulator's own interpreter. Code with it gets a
virtual environment (made once per unpacked code directory, in its ``.venv``) that sees every package the emulator's interpreter
has, so requirements already satisfied there cost nothing and need no network; only what is missing or
pinned to another version is installed into it, by pip, from wherever pip is configured to look (which
includes paths to local wheels in the file, resolved against ``code/``).
"""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from .instances import InstanceFailed

REQUIREMENTS = "requirements.txt"
PIP_TIMEOUT_SECONDS = 600


def model_python(code_dir: Path) -> str:
    """The interpreter for a server of the code in ``code_dir``: ``sys.executable``, or a venv with its
    requirements."""
    requirements = code_dir / REQUIREMENTS
    if not requirements.is_file():
        return sys.executable
    try:
        return _venv_with(requirements, code_dir / ".venv")
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstanceFailed(f"could not install {code_dir.name}/{REQUIREMENTS}: {exc}") from None


def _venv_with(requirements: Path, venv: Path) -> str:
    python = venv / "bin" / "python"
    if (venv / ".installed").exists():
        return str(python)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True,
                   capture_output=True)
    _see_our_packages(python)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check",
         "--no-input", "-r", str(requirements.resolve())],
        cwd=str(requirements.parent), capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise InstanceFailed(f"pip could not install {requirements.parent.name}/{REQUIREMENTS} "
                             f"(exit {result.returncode}):\n{output}")
    (venv / ".installed").touch()
    return str(python)


def _see_our_packages(python: Path) -> None:
    """A .pth file puts the emulator's site-packages after the venv's own, so pip counts them as installed
    and the model server (our package) imports from there."""
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib).mkdir(parents=True, exist_ok=True)
    # addsitedir (not a bare path) so the .pth files there run too: an editable install is one of them.
    (Path(purelib) / "mf_sm_async_emulator.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in dict.fromkeys(paths) if Path(p).is_dir()))
