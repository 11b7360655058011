"""The model server process: one endpoint instance speaking SageMaker's container contract."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mf_sm_async.model import package_estimator, unpack_model

LISTENING = re.compile(r"^model server listening on http://(?P<host>[^:]+):(?P<port>\d+) pid=(?P<pid>\d+)$")


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


@pytest.fixture(scope="module")
def iris_server(tmp_path_factory, iris_model):
    """One server for the packaged iris estimator, shared by the tests that only send requests."""
    root = tmp_path_factory.mktemp("iris")
    model_dir = unpack_model(package_estimator(iris_model, root / "build"), root / "model")
    server = ModelServer(model_dir, root / "model-server.log")
    yield server
    server.stop()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def run_failing(model_dir) -> subprocess.CompletedProcess:
    return subprocess.run(model_server_command(model_dir), capture_output=True, text=True, timeout=60)


def test_ping_answers_200_with_an_empty_body(iris_server):
    assert iris_server.request("GET", "/ping") == (200, "text/plain; charset=utf-8", b"")


def test_unknown_path_is_404(iris_server):
    assert iris_server.request("GET", "/health")[0] == 404
    assert iris_server.request("POST", "/invoke", b"[]")[0] == 404


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        ("application/json", lambda rows: json.dumps(rows.tolist()).encode()),
        ("text/csv", lambda rows: "\n".join(",".join(map(str, r)) for r in rows.tolist()).encode()),
        ("application/x-npy", npy),
    ],
)
def test_invocations_predict_like_the_estimator(iris_server, iris, iris_model, content_type, encode):
    rows = iris.data.to_numpy()[::15]
    status, response_type, body = iris_server.request(
        "POST", "/invocations", encode(rows), {"Content-Type": content_type, "Accept": "application/json"}
    )
    assert (status, response_type) == (200, "application/json")
    assert json.loads(body) == iris_model.predict(rows).tolist()


def test_npy_out_and_custom_attributes_reach_the_handler(iris_server, iris, iris_model):
    rows = iris.data.to_numpy()[:5]
    headers = {
        "Content-Type": "application/x-npy",
        "Accept": "application/x-npy",
        "X-Amzn-SageMaker-Custom-Attributes": "method=predict_proba",
    }
    status, response_type, body = iris_server.request("POST", "/invocations", npy(rows), headers)
    assert (status, response_type) == (200, "application/x-npy")
    np.testing.assert_allclose(np.load(io.BytesIO(body)), iris_model.predict_proba(rows), rtol=1e-12)


def test_missing_accept_answers_json_like_the_toolkit(iris_server, iris, iris_model):
    rows = iris.data.to_numpy()[:2]
    csv_body = "\n".join(",".join(map(str, r)) for r in rows.tolist()).encode()
    for headers in ({"Content-Type": "text/csv"}, {"Content-Type": "text/csv", "Accept": "*/*"}):
        status, response_type, body = iris_server.request("POST", "/invocations", csv_body, headers)
        assert (status, response_type) == (200, "application/json")
        assert json.loads(body) == iris_model.predict(rows).tolist()


def test_connection_is_kept_alive_between_requests(iris_server):
    conn = iris_server.connect()
    try:
        assert send(conn, "GET", "/ping")[0] == 200
        local_port = conn.sock.getsockname()[1]
        assert send(conn, "POST", "/invocations", b"[[5.1, 3.5, 1.4, 0.2]]", {"Content-Type": "application/json"})[2] == b"[0]"
        assert conn.sock.getsockname()[1] == local_port
    finally:
        conn.close()


def test_handler_exception_is_a_500_whose_body_names_the_error(tmp_path, start_model_server):
    model_dir = write_handler(tmp_path / "model", """
        def model_fn(model_dir):
            return None

        def check_payload(data):
            raise ValueError(f"payload has {len(data)} bytes, wanted 3")

        def transform_fn(model, input_data, content_type, accept):
            check_payload(input_data)
    """)
    server = start_model_server(model_dir)
    status, response_type, body = server.request("POST", "/invocations", b"abcd", {"Content-Type": "application/octet-stream"})
    assert (status, response_type) == (500, "text/plain; charset=utf-8")
    text = body.decode()
    assert text.splitlines()[0] == "ValueError: payload has 4 bytes, wanted 3"
    assert "inference.py" in text and "check_payload" in text  # the traceback's last frames
    assert "ValueError: payload has 4 bytes, wanted 3" in server.stderr()
    assert server.request("GET", "/ping")[0] == 200  # the instance stays healthy


def test_default_functions_follow_the_toolkit(tmp_path, start_model_server):
    model_dir = write_handler(tmp_path / "model", """
        def model_fn(model_dir):
            return lambda data: data * 2   # numpy arithmetic: the default input_fn gives arrays
    """)
    server = start_model_server(model_dir)
    json_in = {"Content-Type": "application/json", "Accept": "application/json"}
    assert server.request("POST", "/invocations", b"[1, 2.5, 3]", json_in)[2] == b"[2.0, 5.0, 6.0]"
    csv_in = {"Content-Type": "text/csv", "Accept": "text/csv"}
    assert server.request("POST", "/invocations", b"1,2\n3,4\n", csv_in)[2] == b"2.0,4.0\n6.0,8.0\n"
    status, _, body = server.request("POST", "/invocations", b"<x/>", {"Content-Type": "application/xml"})
    assert status == 415
    assert body.decode().startswith("UnsupportedFormatError: unsupported content type 'application/xml'")


def test_transform_fn_gets_context_and_chooses_the_response_type(tmp_path, start_model_server):
    model_dir = write_handler(tmp_path / "model", """
        import json

        def model_fn(model_dir):
            return "model"

        def transform_fn(model, input_data, content_type, accept, context):
            return json.dumps({
                "input_type": type(input_data).__name__,
                "content_type": content_type,
                "accept": accept,
                "custom_attributes": context.custom_attributes,
                "trace": context.request_headers.get("X-Trace"),
            }), "application/vnd.result+json"
    """)
    server = start_model_server(model_dir)
    headers = {"Content-Type": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "a=1", "X-Trace": "t-9"}
    status, response_type, body = server.request("POST", "/invocations", b"{}", headers)
    assert (status, response_type) == (200, "application/vnd.result+json")
    assert json.loads(body) == {
        "input_type": "str", "content_type": "application/json", "accept": "application/json",
        "custom_attributes": "a=1", "trace": "t-9",
    }
    octets = server.request("POST", "/invocations", b"\xff", {"Content-Type": "application/octet-stream", "Accept": "x/y"})
    assert json.loads(octets[2])["input_type"] == "bytes"
    assert json.loads(octets[2])["custom_attributes"] is None


def test_handler_returning_a_non_bytes_body_is_a_500_naming_model_error(tmp_path, start_model_server):
    model_dir = write_handler(tmp_path / "model", """
        def model_fn(model_dir):
            return None

        def transform_fn(model, input_data, content_type, accept):
            return 42
    """)
    status, _, body = start_model_server(model_dir).request("POST", "/invocations", b"1", {"Content-Type": "text/plain"})
    assert status == 500
    assert body.decode().startswith("ModelError: the handler returned int; expected bytes, str or (body, content_type)")


def test_requests_are_served_concurrently(tmp_path, start_model_server):
    # Each request waits inside the handler for the other: served one at a time, both would fail.
    model_dir = write_handler(tmp_path / "model", """
        import threading, time

        barrier = threading.Barrier(2)

        def model_fn(model_dir):
            return None

        def transform_fn(model, input_data, content_type, accept):
            started = time.monotonic()
            barrier.wait(timeout=20)
            return f"{started} {time.monotonic()}"
    """)
    server = start_model_server(model_dir)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: server.request("POST", "/invocations", b"x", {"Content-Type": "text/plain"}), range(2)))
    assert [status for status, _, _ in results] == [200, 200], results
    (start_a, end_a), (start_b, end_b) = [map(float, body.split()) for _, _, body in results]
    assert max(start_a, start_b) < min(end_a, end_b)  # the two handler calls overlapped


def test_twenty_megabyte_body_round_trips(tmp_path, start_model_server):
    model_dir = write_handler(tmp_path / "model", """
        def model_fn(model_dir):
            return None

        def transform_fn(model, input_data, content_type, accept):
            return input_data[::-1], content_type
    """)
    payload = os.urandom(20 * 1024 * 1024)
    status, response_type, body = start_model_server(model_dir).request(
        "POST", "/invocations", payload, {"Content-Type": "application/octet-stream"}
    )
    assert (status, response_type) == (200, "application/octet-stream")
    assert body == payload[::-1]


def test_missing_handler_exits_with_one_clear_stderr_line(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.joblib").write_bytes(b"")
    result = run_failing(tmp_path / "model")
    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("model server failed: ")
    assert "code/inference.py is missing" in lines[0]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def predict_fn(data, model):\n    return data\n", r"defines no model_fn\(model_dir\)"),
        ("import no_such_dependency\n", "importing .*inference.py failed: ModuleNotFoundError: No module named 'no_such_dependency'"),
        ("def model_fn(model_dir):\n    raise FileNotFoundError('weights.pt not found')\n",
         r"model_fn\(.*\) in .*inference.py raised FileNotFoundError: weights.pt not found"),
        ("def model_fn(d):\n    pass\ndef transform_fn(m, d, c, a):\n    pass\ndef input_fn(d, c):\n    pass\n",
         "defines transform_fn together with input_fn"),
    ],
    ids=["no-model_fn", "import-error", "model_fn-raises", "transform_fn-and-input_fn"],
)
def test_unloadable_handler_exits_3_with_the_reason_on_the_last_stderr_line(tmp_path, source, expected):
    result = run_failing(write_handler(tmp_path / "model", source))
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("model server failed: ")
    assert re.search(expected, last), last


def test_explicit_port_is_used_and_a_taken_port_exits_4(tmp_path, start_model_server):
    model_dir = write_handler(tmp_path / "model", "def model_fn(model_dir):\n    return None\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_model_server(model_dir, port=port)
    assert server.port == port and server.request("GET", "/ping")[0] == 200
    result = subprocess.run(model_server_command(model_dir, port), capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1].startswith(f"model server failed: cannot listen on http://127.0.0.1:{port}")


def test_sigterm_exits_cleanly(tmp_path, start_model_server):
    server = start_model_server(write_handler(tmp_path / "model", "def model_fn(model_dir):\n    return None\n"))
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_server_exits_when_its_parent_dies(tmp_path):
    model_dir = write_handler(tmp_path / "model", "def model_fn(model_dir):\n    return None\n")
    parent_script = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen({model_server_command(model_dir)!r}, stdout=subprocess.PIPE, text=True)
        print(child.stdout.readline().strip(), flush=True)
        time.sleep(3600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_script], stdout=subprocess.PIPE, text=True)
    try:
        match = LISTENING.match(parent.stdout.readline().strip())
        assert match, "model server did not start"
        child_pid = int(match["pid"])
        assert _alive(child_pid)
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20  # the watchdog polls every 0.5 s
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid), "model server outlived its parent"
    finally:
        parent.kill()
        parent.wait(timeout=30)
        parent.stdout.close()
        if "child_pid" in locals() and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)
