"""Shared fixtures: a fitted iris model and a launcher for the real model server process."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LISTENING = re.compile(r"^model server listening on http://(?P<host>[^:]+):(?P<port>\d+) pid=(?P<pid>\d+)$")


@pytest.fixture(scope="session")
def iris():
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True)


@pytest.fixture(scope="session")
def iris_model(iris):
    """LogisticRegression fitted on a numpy array (no feature names)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(iris.data.to_numpy(), iris.target.to_numpy())


def model_server_command(model_dir, port: int = 0) -> list[str]:
    return [sys.executable, "-m", "mf_sm_async.local.model_server", "--model-dir", str(model_dir), "--port", str(port)]


def write_handler(directory: Path, source: str) -> Path:
    """A model directory whose code/inference.py is ``source``."""
    (directory / "code").mkdir(parents=True)
    (directory / "code" / "inference.py").write_text(textwrap.dedent(source))
    return directory


class ModelServer:
    """A model server subprocess that has printed its listening line."""

    def __init__(self, model_dir, log_path: Path, port: int = 0):
        self.log_path = log_path
        self._log = log_path.open("wb")  # a file, not a pipe: tracebacks must never block the server
        self.proc = subprocess.Popen(
            model_server_command(model_dir, port), stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        line = self.proc.stdout.readline().strip()  # "" means the process exited
        match = LISTENING.match(line)
        if match is None:
            self.proc.wait(timeout=30)
            raise AssertionError(f"model server did not start: {line!r}\n{self.stderr()}")
        self.host, self.port, self.pid = match["host"], int(match["port"]), int(match["pid"])

    def stderr(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """One request on a fresh connection; returns (status, content type, body)."""
        conn = self.connect()
        try:
            return send(conn, method, path, body, headers)
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self._log.close()


def send(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.getheader("Content-Type"), response.read()


@pytest.fixture
def start_model_server(tmp_path):
    """Factory: start_model_server(model_dir, port=0) -> ModelServer, killed at teardown."""
    servers: list[ModelServer] = []

    def start(model_dir, port: int = 0) -> ModelServer:
        server = ModelServer(model_dir, tmp_path / f"model-server-{len(servers)}.log", port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
