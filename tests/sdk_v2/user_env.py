"""What a user of the sagemaker SDK has after ``eval "$(mf-sm-async local env)"``, and a guard that the SDK
then stays off the network. Standard library only: the sagemaker v2 tests import it from their own virtual
environment (which does not install this package), the v3 tests from the main one.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Variables through which a user's own AWS setup could redirect or re-credential the clients.
USER_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def cli_command() -> list[str]:
    """How to run ``mf-sm-async``: ``$MF_SM_ASYNC_CLI`` (a command line) or the script on PATH."""
    return shlex.split(os.environ.get("MF_SM_ASYNC_CLI") or "mf-sm-async")


def local(action: str, state_dir: str | None = None, cli: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [*(cli or cli_command()), "local", action, *(["--state-dir", str(state_dir)] if state_dir else [])]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def exported_env(state_dir: str | None = None, cli: list[str] | None = None) -> dict[str, str]:
    """Run ``mf-sm-async local env`` (it starts the emulator when none runs) and parse its ``export`` lines."""
    result = local("env", state_dir, cli)
    if result.returncode != 0:
        raise RuntimeError(f"`mf-sm-async local env` failed ({result.returncode}): {result.stderr}")
    env = {}
    for line in result.stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    if "AWS_ENDPOINT_URL" not in env:
        raise RuntimeError(f"`mf-sm-async local env` printed no AWS_ENDPOINT_URL: {result.stdout!r}")
    return env


def isolate(env: dict[str, str], scratch: str) -> dict[str, str]:
    """``env`` plus what keeps a developer's own AWS files and profile out of the test (not needed by users)."""
    return {**env, "AWS_CONFIG_FILE": os.path.join(scratch, "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(scratch, "no-aws-credentials")}


class Offline:
    """While installed, resolving any host name but loopback fails at once and is recorded in ``attempts``."""

    def __init__(self):
        self.attempts: list[str] = []
        self._real = socket.getaddrinfo

    def getaddrinfo(self, host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            self.attempts.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"offline test: no network for {name}")
        return self._real(host, *args, **kwargs)

