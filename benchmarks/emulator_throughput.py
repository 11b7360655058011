"""Invocations per second through the emulator, end to end, with tiny payloads.

    python benchmarks/emulator_throughput.py [--invocations 2000] [--threads 16]

Each invocation starts as bytes in this process and ends when the decoded output, checked byte for byte,
is back in this process. Styles, all through plain boto3 against a freshly started daemon:

- notification body: inline Body, completion and output from the SNS -> SQS notification
  (IncludeInferenceResponseIn), no S3 round trip at all;
- inline + S3 output: inline Body, completion from SQS, output read with GetObject;
- S3 in + S3 out: PutObject of the payload, InvokeEndpointAsync with InputLocation, SQS, GetObject;
- direct: the same payloads POSTed straight to the model-server process (no S3, no queue): the limit.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path

from emulator_setup import clients, deploy

from mf_sm_async.local import daemon
from mf_sm_async.model import package_directory

HERE = Path(__file__).parent


def run_style(c, name: str, queue: str, style: str, n: int, threads: int) -> float:
    payloads = {f"{style[:6]}-{i}": json.dumps({"row": i, "x": [i * 0.5] * 8}).encode() for i in range(n)}
    done: dict[str, bytes] = {}
    lock = threading.Lock()
    s3, runtime, sqs = c["s3"], c["sagemaker-runtime"], c["sqs"]

    def send(item):
        inference_id, body = item
        if style == "s3 in + s3 out":
            s3.put_object(Bucket=name, Key=f"in/{inference_id}", Body=body)
            runtime.invoke_endpoint_async(EndpointName=name, InputLocation=f"s3://{name}/in/{inference_id}",
                                          InferenceId=inference_id, ContentType="application/json")
        else:
            runtime.invoke_endpoint_async(EndpointName=name, Body=body, InferenceId=inference_id,
                                          ContentType="application/json")

    def fetch(note):
        if style == "notification body":
            return base64.b64decode(note["responseBody"]["content"])
        bucket, key = note["responseParameters"]["outputLocation"][5:].split("/", 1)
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def consume(pool):
        while True:
            with lock:
                if len(done) >= n:
                    return
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not messages:
                continue
            sqs.delete_message_batch(QueueUrl=queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            notes = [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
            notes = [n for n in notes if n.get("eventName") == "InferenceResult"]  # not TestNotification
            for note, output in zip(notes, pool.map(fetch, notes)):
                with lock:
                    done[note["inferenceId"]] = output

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as senders, cf.ThreadPoolExecutor(threads) as fetchers:
        consumers = [threading.Thread(target=consume, args=(fetchers,)) for _ in range(4)]
        for t in consumers:
            t.start()
        list(senders.map(send, payloads.items()))
        for t in consumers:
            t.join()
    elapsed = time.perf_counter() - started
    wrong = [k for k, v in payloads.items() if done.get(k) != v]
    assert not wrong, f"{len(wrong)} outputs differ from their inputs ({style})"
    return n / elapsed


def run_direct(port: int, n: int, threads: int) -> float:
    local = threading.local()

    def post(i):
        conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", port)
        local.conn = conn
        body = json.dumps({"row": i, "x": [i * 0.5] * 8}).encode()
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        assert conn.getresponse().read() == body

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, range(n)))
    return n / (time.perf_counter() - started)


def model_server_port(state_dir: Path) -> int:
    import re
    logs = sorted((state_dir / "endpoints").rglob("i-*.log"))
    text = logs[-1].read_text()
    return int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", text).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--max-concurrent", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp) / "state"
        state = daemon.start(state_dir)
        try:
            c = clients(state["url"], args.threads * 2)
            tarball = package_directory(HERE / "models" / "echo", Path(tmp))
            name, queue = deploy(c, tarball, max_concurrent=args.max_concurrent, include_response=True)
            direct = run_direct(model_server_port(state_dir), args.invocations, args.threads)
            rows = [(style, run_style(c, name, queue, style, args.invocations, args.threads))
                    for style in ("notification body", "inline + s3 output", "s3 in + s3 out")]
        finally:
            daemon.stop(state_dir)
    print(f"\n{args.invocations} tiny invocations per style, {args.threads} client threads, 1 instance x "
          f"{args.max_concurrent} concurrent invocations\n")
    print("| client style | invocations/s | vs direct POST |\n|---|---|---|")
    for style, rate in rows:
        print(f"| {style} | {rate:.0f} | {rate / direct:.2f}x |")
    print(f"| direct POST to the model server (no S3, no queue) | {direct:.0f} | 1.00x |")


if __name__ == "__main__":
    main()
