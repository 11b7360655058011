"""S3 requests on the emulator's one URL, streamed through to the object backend (rclone) in 1 MiB
chunks both ways, so neither a 1 GiB upload nor a 1 GiB download is ever held in memory."""

from __future__ import annotations

import http.client
import urllib.parse

from .wire import credential_scope

CHUNK = 1 << 20
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "expect"}
def is_s3_request(environ: dict) -> bool:
    """SigV4-signed for service ``s3``, in the Authorization header or a presigned URL's query."""
    scope = credential_scope(environ)
    return scope is not None and scope.service == "s3"


def _request_headers(environ: dict) -> list[tuple[str, str]]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key.replace("_", "-").title()
        else:
            continue
        if name.lower() not in _HOP_BY_HOP:
            headers.append((name, value))
    return headers


class S3Proxy:
    """One loopback connection per request: a kept-alive one could be left mid-response by a client
    that went away, and a proxied body cannot be replayed on a fresh one."""

    def __init__(self, port: int):
        self.port = port

    def __call__(self, environ, start_response):
        uri = environ.get("REQUEST_URI") or urllib.parse.quote(environ.get("PATH_INFO", "/")) + (
            "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        headers = _request_headers(environ)
        length = environ.get("CONTENT_LENGTH")
        chunked = not length and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            conn.putrequest(environ["REQUEST_METHOD"], uri, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            self._send_body(conn, environ["wsgi.input"], int(length or 0), chunked)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException):
            conn.close()
            raise
        drop = _HOP_BY_HOP | ({"content-md5"} if response.status == 206 else set())
        out = [(name, value) for name, value in response.getheaders() if name.lower() not in drop
               # rclone sends the whole object's checksum with a ranged GET; botocore then rejects the range
               and not (response.status == 206 and name.lower().startswith("x-amz-checksum-"))]
        start_response(f"{response.status} {response.reason}", out)
        return self._stream(conn, response)

    @staticmethod
    def _send_body(conn, source, length: int, chunked: bool) -> None:
        if chunked:
            while chunk := source.read(CHUNK):
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
            return
        while length > 0:
            chunk = source.read(min(CHUNK, length))
            if not chunk:
                break
            conn.send(chunk)
            length -= len(chunk)

    @staticmethod
    def _stream(conn, response):
        try:
            while chunk := response.read(CHUNK):
                yield chunk
        finally:
            conn.close()
