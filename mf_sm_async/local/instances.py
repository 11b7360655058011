"""One endpoint instance: a real model-server process speaking the container contract.

The process serves ``GET /ping`` and ``POST /invocations`` on a port of its own (see
:mod:`mf_sm_async.local.model_server`). It exits by itself when the daemon dies (it watches its
parent pid), so no instance outlives the emulator.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

class InstanceFailed(Exception):
    """The model server did not come up; the message ends with the last lines of its log."""


class InstanceGone(Exception):
    """The connection to a running instance broke (the process died or was killed)."""


class InvocationTimedOut(Exception):
    pass


@dataclass
class ModelResponse:
    status: int
    body: bytes
    content_type: str | None


_LISTENING = re.compile(rb"model server listening on http://127\.0\.0\.1:(\d+) pid=(\d+)")


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class Instance:
    def __init__(self, model_dir: Path, log_dir: Path, env: dict[str, str] | None = None,
                 python: str = sys.executable):
        self.python = python
        self.instance_id = f"i-{uuid.uuid4().hex[:12]}"  # unique across daemon restarts: names its log
        self.model_dir = model_dir
        self.log_path = log_dir / f"{self.instance_id}.log"
        self.env = env or {}
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the process on a port it picks itself (no race for a free port); see wait_ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", "mf_sm_async.local.model_server",
                 "--model-dir", str(self.model_dir), "--port", "0"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=str(self.model_dir),
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise InstanceFailed(f"model server exited with code {self.process.returncode}:\n"
                                     f"{tail(self.log_path)}")
            if not self.port:
                self.port = self._listening_port()
                if not self.port:
                    time.sleep(0.05)
                    continue
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise InstanceFailed(f"model server did not answer /ping within {timeout:.0f}s:\n{tail(self.log_path)}")

    def _listening_port(self) -> int:
        """The port from the model server's first log line, once it has written it."""
        try:
            with open(self.log_path, "rb") as log:
                for match in _LISTENING.finditer(log.read()):
                    if int(match.group(2)) == self.process.pid:
                        return int(match.group(1))
        except OSError:
            pass
        return 0

    def wait_exit(self, timeout: float) -> bool:
        """True if the process has exited or exits within ``timeout`` seconds."""
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def connect(self) -> http.client.HTTPConnection:
        """A keep-alive connection for one worker thread."""
        return http.client.HTTPConnection("127.0.0.1", self.port, blocksize=1 << 20)

    def invoke(self, conn: http.client.HTTPConnection, body, length: int, *, content_type: str | None,
               accept: str | None, custom_attributes: str | None, timeout: float) -> ModelResponse:
        """POST the payload (bytes, or a stream of ``length`` bytes sent in blocks) to /invocations."""
        headers = {"Content-Type": content_type or "application/octet-stream", "Content-Length": str(length)}
        if accept:
            headers["Accept"] = accept
        if custom_attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except socket.timeout:
            conn.close()
            raise InvocationTimedOut() from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise InstanceGone(str(exc)) from None
        return ModelResponse(response.status, data, response.getheader("Content-Type"))

    def stop(self, grace: float = 3.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
