"""A stand-in for a container image the emulator does not know: a plain HTTP server speaking SageMaker's
container contract on the port it is given (GET /ping, POST /invocations). Each answer says what the
server saw, so a test can check the emulator wired the port, the model directory and the environment.

    python serve.py --port PORT --model-dir DIR
"""

import argparse
import http.server
import json
import os


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", required=True)
    args = parser.parse_args()
    with open(os.path.join(args.model_dir, "greeting.txt")) as handle:
        greeting = handle.read().strip()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status, body, content_type="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._reply(200 if self.path == "/ping" else 404, b"")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._reply(200, json.dumps({
                "greeting": greeting, "body": body.decode(), "content_type": self.headers.get("Content-Type"),
                "port": args.port, "bind_to_port": os.environ.get("SAGEMAKER_BIND_TO_PORT"),
                "model_env": os.environ.get("ECHO_SUFFIX")}).encode())

    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
