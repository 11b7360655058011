"""The fan-out engine (``ep.predict``) against the loop a user writes from AWS's docs, against the physical
limit, and how soon it holds a result once the endpoint has written it.

    python benchmarks/fanout_throughput.py [--naive-rows 200] [--engine-rows 20000] [--limit-rows 400000]
                                           [--columns 16] [--instances 2] [--concurrency 4] [--repeat 2]
                                           [--rows-per-payload N] [--latency-invocations 20]

One daemon of its own (temporary MF_SM_ASYNC_HOME), one endpoint of the row-sum test model
(``tests/conformance/models/rowsum``: each row's output is its sum; every answer is checked) with
``--instances`` x ``--concurrency`` and a fixed fleet, shared by all measurements:

a. naive loop: per row, PutObject of ``[[row]]`` as JSON, InvokeEndpointAsync(InputLocation), HeadObject
   on the OutputLocation every 0.1 s until it exists, GetObject; row after row, plain boto3. Run on
   ``--naive-rows`` rows and extrapolated, next to ``ep.predict`` on ``--engine-rows`` rows.
b. physical limit: the same JSON Lines payloads of 1,000 rows (``codecs.encode_rows``) POSTed straight to
   the model-server processes by instances x concurrency threads (each encodes its payload, POSTs it and
   decodes the answer with ``codecs.decode_output``: the same client work, no S3, no queue, no
   notifications), next to ``ep.predict(df, rows_per_payload=1000)``. Alternated ``--repeat`` times. The
   CPU time each process spent (client, daemon, rclone, model servers; from /proc) shows what bounds it:
   on this 2-core machine the emulator's own work competes with the model servers for the same cores.
c. completion latency: from the endpoint writing a part's output to the engine holding its decoded rows.
   "Written" is the ``eventTime`` of the success notification (the emulator stamps it, in ms, right after
   it stored the output object), read from a separate SQS queue subscribed to the endpoint's success
   topic for these runs only. The object's LastModified is no good here: HeadObject / GetObject give it
   as an HTTP date, to the second. "Holding" is seen from outside, through a ``progress=`` callback
   (nothing of the engine is wrapped or patched): the engine adds to ``done`` in its loop right after a
   part's rows are decoded and kept, but hands an event to the callback at most every 0.2 s, so an
   increment is only known to lie between the previous event and the one that shows it. The k-th
   increment is paired with the k-th eventTime (completion order); the table gives the latencies' upper
   bounds (conservative) and lower bounds. The last parts of a run show up only in the ``finished``
   event, sent after predict's own wind-down, so their upper bound includes it; "last output ->
   predict() returns" is that wind-down alone. Regimes: a burst (a run as in (b), up to the default
   max_in_flight=64 parts in flight), one part at a time (max_in_flight=1), and
   ``ep.invoke_async(...).result()`` (HeadObject polling with backoff, not the engine's path; timed
   exactly, to result() returning).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import http.client
import json
import os
import statistics
import threading
import time
import uuid

import numpy as np
import pandas as pd
from botocore.exceptions import ClientError
from fanout_common import ROWSUM_MODEL, boto3_clients, deploy, model_server_ports, own_emulator, percentile

from mf_sm_async.batch import codecs
from mf_sm_async.batch.completion import sqs_policy

JSONL = "application/jsonlines"


def frame(rows: int, columns: int, seed: int = 0) -> pd.DataFrame:
    values = np.random.default_rng(seed).normal(size=(rows, columns))
    return pd.DataFrame(values, columns=[f"f{n}" for n in range(columns)])


def row_sums(df: pd.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(df.to_numpy()).sum(axis=1)


def check(df: pd.DataFrame, result) -> None:
    assert result.failures.empty, result.failures.head()
    np.testing.assert_array_equal(result.predictions["prediction"].to_numpy(), row_sums(df))


def timed_predict(ep, df: pd.DataFrame, **options):
    started = time.perf_counter()
    result = ep.predict(df, progress=False, **options)
    seconds = time.perf_counter() - started
    check(df, result)
    return len(df) / seconds, result


# a. the loop from the docs -----------------------------------------------------------------------

def naive_loop(ep, c: dict, df: pd.DataFrame) -> float:
    s3, runtime = c["s3"], c["sagemaker-runtime"]
    bucket, prefix = ep.resources.bucket, f"{ep.resources.prefix}/naive-{uuid.uuid4().hex[:8]}"
    expected = row_sums(df)
    started = time.perf_counter()
    for n, row in enumerate(df.itertuples(index=False)):
        key = f"{prefix}/{n}.json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps([list(row)]).encode())
        answer = runtime.invoke_endpoint_async(EndpointName=ep.name, InputLocation=f"s3://{bucket}/{key}",
                                               ContentType="application/json")
        out_bucket, out_key = answer["OutputLocation"][5:].split("/", 1)
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.head_object(Bucket=out_bucket, Key=out_key)
                break
            except ClientError as error:
                if error.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"no output for row {n} after 60 s")
            time.sleep(0.1)
        value = json.loads(s3.get_object(Bucket=out_bucket, Key=out_key)["Body"].read())
        assert value == [expected[n]], (value, expected[n])
    return len(df) / (time.perf_counter() - started)


# b. the physical limit -----------------------------------------------------------------------------

def direct(ports: list[int], concurrency: int, df: pd.DataFrame, rows_per_payload: int) -> float:
    """Payloads POSTed straight to the model servers: ``concurrency`` threads per instance."""
    starts = iter(range(0, len(df), rows_per_payload))
    lock = threading.Lock()
    results: dict[int, pd.DataFrame] = {}

    def worker(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                start = next(starts, None)
            if start is None:
                conn.close()
                return
            part = df.iloc[start:start + rows_per_payload]
            conn.request("POST", "/invocations", body=codecs.encode_rows(part, JSONL),
                         headers={"Content-Type": JSONL, "Accept": JSONL})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, body[:500]
            results[start] = codecs.decode_output(body, response.getheader("Content-Type") or JSONL, len(part))

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(len(ports) * concurrency) as pool:
        list(pool.map(worker, [p for p in ports for _ in range(concurrency)]))
    seconds = time.perf_counter() - started
    got = pd.concat([results[s] for s in sorted(results)])["prediction"].to_numpy()
    np.testing.assert_array_equal(got, row_sums(df))
    return len(df) / seconds


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_roles(daemon_pid: int) -> dict[int, str]:
    """This client, the daemon, and the daemon's children: rclone and the model servers."""
    roles = {os.getpid(): "client", daemon_pid: "daemon"}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text.rsplit(")", 1)[1].split()
        if int(rest[1]) == daemon_pid:
            roles[int(entry)] = "rclone" if "rclone" in name else "model servers"
    return roles


def cpu_by_role(roles: dict[int, str]) -> dict[str, float]:
    spent: dict[str, float] = {}
    for pid, role in roles.items():
        spent[role] = spent.get(role, 0.0) + cpu_seconds(pid)
    return spent


def measured(roles: dict[int, str], spent: dict[str, float], fn):
    """fn()'s value, adding the CPU seconds each role spent meanwhile to ``spent``."""
    before = cpu_by_role(roles)
    value = fn()
    for role, seconds in cpu_by_role(roles).items():
        spent[role] = spent.get(role, 0.0) + seconds - before.get(role, 0.0)
    return value


# c. completion latency -------------------------------------------------------------------------------

class SideQueue:
    """An SQS queue of our own on the endpoint's success topic: the eventTime of every output."""

    def __init__(self, ep, c: dict):
        self.sqs, self.sns = c["sqs"], c["sns"]
        self.url = self.sqs.create_queue(QueueName=f"fanout-latency-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        topic = ep.resources.success_topic
        self.sqs.set_queue_attributes(QueueUrl=self.url, Attributes={"Policy": sqs_policy(arn, [topic])})
        self.subscription = self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                                               ReturnSubscriptionArn=True)["SubscriptionArn"]

    def drain(self, expect: int = 0, timeout: float = 30.0) -> dict[str, float]:
        """inference id -> eventTime (epoch seconds) of the InferenceResult notifications queued so far
        (waits until ``expect`` of them came)."""
        found: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=1).get("Messages", [])
            if messages:
                self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])
            for message in messages:
                note = json.loads(json.loads(message["Body"])["Message"])
                if note.get("eventName") == "InferenceResult":
                    found[note["inferenceId"]] = dt.datetime.fromisoformat(
                        note["eventTime"].replace("Z", "+00:00")).timestamp()
            if (not messages and len(found) >= expect) or time.monotonic() > deadline:
                return found

    def close(self) -> None:
        self.sns.unsubscribe(SubscriptionArn=self.subscription)
        self.sqs.delete_queue(QueueUrl=self.url)


def engine_latency(ep, side: SideQueue, df: pd.DataFrame, **options) -> tuple[list[float], list[float], float, float]:
    """(upper bounds, lower bounds) of each part's latency, last output written -> predict() returned, and
    the engine's own median (each part's notification eventTime -> its rows decoded, in metrics)."""
    side.drain()
    events: list[tuple[float, int]] = []

    def on_event(event) -> None:
        events.append((time.time(), event.done))

    result = ep.predict(df, progress=on_event, **options)
    returned = time.time()
    check(df, result)
    written = sorted(side.drain(expect=result.metrics.payloads).values())
    uppers, lowers = [], []
    previous_time, previous_done = events[0][0], 0
    for when, done in events:
        for k in range(previous_done, min(done, len(written))):
            uppers.append(when - written[k])
            lowers.append(max(0.0, previous_time - written[k]))
        previous_time, previous_done = when, max(previous_done, done)
    assert len(uppers) == len(written) == result.metrics.payloads, (len(uppers), len(written))
    return uppers, lowers, returned - written[-1], result.metrics.median_latency_seconds


def invoke_async_latency(ep, side: SideQueue, df: pd.DataFrame, n: int) -> list[float]:
    side.drain()
    latencies = []
    for i in range(n):
        part = df.iloc[i * 500:(i + 1) * 500]
        invocation = ep.invoke_async(codecs.encode_rows(part, JSONL), content_type=JSONL, accept=JSONL)
        body = invocation.result(timeout=60)
        held = time.time()
        assert len(codecs.decode_output(body, JSONL, len(part))) == len(part)
        written = side.drain(expect=1)
        latencies.append(held - written[invocation.inference_id])
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-rows", type=int, default=200)
    parser.add_argument("--engine-rows", type=int, default=20_000)
    parser.add_argument("--rows-per-payload", type=int, default=None, help="for (a); default: the engine's")
    parser.add_argument("--limit-rows", type=int, default=400_000)
    parser.add_argument("--columns", type=int, default=16)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--latency-invocations", type=int, default=20)
    args = parser.parse_args()

    with own_emulator() as (home, state):
        ep = deploy(ROWSUM_MODEL, instances=args.instances, concurrency=args.concurrency)
        try:
            c = boto3_clients()
            ports = model_server_ports(ep, home / "local")
            timed_predict(ep, frame(2_000, args.columns, seed=9))  # warm-up: clients, imports, first run
            # a.
            naive = naive_loop(ep, c, frame(args.naive_rows, args.columns, seed=1))
            engine_df = frame(args.engine_rows, args.columns, seed=2)
            engine, engine_result = timed_predict(ep, engine_df, rows_per_payload=args.rows_per_payload)
            # b.
            limit_df = frame(args.limit_rows, args.columns, seed=3)
            direct_rates, engine_rates = [], []
            roles, direct_cpu, engine_cpu = process_roles(state["pid"]), {}, {}
            for _ in range(args.repeat):
                direct_rates.append(measured(roles, direct_cpu,
                                             lambda: direct(ports, args.concurrency, limit_df, 1000)))
                engine_rates.append(measured(roles, engine_cpu,
                                             lambda: timed_predict(ep, limit_df, rows_per_payload=1000)[0]))
            # c.
            side = SideQueue(ep, c)
            try:
                burst = engine_latency(ep, side, limit_df, rows_per_payload=1000)
                single = engine_latency(ep, side, frame(30 * 500, args.columns, seed=4), rows_per_payload=500,
                                        max_in_flight=1)
                polled = invoke_async_latency(ep, side, frame(args.latency_invocations * 500, args.columns, seed=5),
                                              args.latency_invocations)
            finally:
                side.close()
        finally:
            ep.teardown()

    m = engine_result.metrics
    print(f"\nendpoint: row-sum model, {args.instances} instances x {args.concurrency} concurrent invocations; "
          f"{args.columns} float columns per row\n")
    print("a. vs the naive loop (PutObject, InvokeEndpointAsync, HeadObject every 0.1 s, GetObject; row by row)\n")
    print("| client | rows | rows/s | vs naive | target |\n|---|---|---|---|---|")
    print(f"| naive loop | {args.naive_rows:,} | {naive:.1f} | 1x | |")
    print(f"| ep.predict ({m.payloads} payloads of {args.engine_rows // max(m.payloads, 1)} rows) "
          f"| {args.engine_rows:,} | {engine:,.0f} | {engine / naive:,.0f}x | >= 50x |")
    d, e = statistics.median(direct_rates), statistics.median(engine_rates)
    print(f"\nb. vs the physical limit ({args.limit_rows:,} rows in JSON Lines payloads of 1,000 rows, "
          f"median of {args.repeat})\n")
    print("| client | rows/s | vs direct | target |\n|---|---|---|---|")
    print(f"| direct POST to the model servers ({len(ports) * args.concurrency} threads) | {d:,.0f} "
          f"(runs: {', '.join(f'{r:,.0f}' for r in direct_rates)}) | 1.00x | |")
    print(f"| ep.predict(rows_per_payload=1000) | {e:,.0f} (runs: {', '.join(f'{r:,.0f}' for r in engine_rates)}) "
          f"| {e / d:.2f}x | >= 0.5x |")
    per = 100_000 / (args.limit_rows * args.repeat)
    order = ["client", "daemon", "rclone", "model servers"]
    print("\nCPU seconds per 100,000 rows, by process (the machine has "
          f"{len(os.sched_getaffinity(0))} cores)\n")
    print("| side | " + " | ".join(order) + " | all |\n|---|" + "---|" * (len(order) + 1))
    for label, spent in (("direct POST", direct_cpu), ("ep.predict", engine_cpu)):
        print(f"| {label} | " + " | ".join(f"{spent.get(r, 0.0) * per:.2f}" for r in order)
              + f" | {sum(spent.values()) * per:.2f} |")
    print("\nc. completion latency: output written (notification eventTime) -> decoded result held by the client\n")
    print("| path | parts | median | p90 | max | target |\n|---|---|---|---|---|---|")
    for label, (uppers, lowers, tail, own) in (
            (f"ep.predict, burst ({len(burst[0])} parts of 1,000 rows, up to 64 in flight)", burst),
            (f"ep.predict, one part at a time ({len(single[0])} parts of 500 rows, max_in_flight=1)", single)):
        print(f"| {label}: upper bound | {len(uppers)} | {statistics.median(uppers):.3f} s "
              f"| {percentile(uppers, 0.9):.3f} s | {max(uppers):.3f} s | median <= 0.5 s |")
        print(f"| {label}: lower bound | {len(lowers)} | {statistics.median(lowers):.3f} s "
              f"| {percentile(lowers, 0.9):.3f} s | {max(lowers):.3f} s | |")
        print(f"| {label}: the engine's own measure (metrics.median_latency_seconds) | {len(uppers)} | {own:.3f} s "
              "| | | median <= 0.5 s |")
        print(f"| {label}: last output -> predict() returns | 1 | {tail:.3f} s | | | |")
    print(f"| ep.invoke_async(payload).result() (HeadObject polling, backoff to 1 s) | {len(polled)} "
          f"| {statistics.median(polled):.3f} s | {percentile(polled, 0.9):.3f} s | {max(polled):.3f} s | |")
    print("| for reference: the SDK's AsyncInferenceResponse waiter polls every 15 s | | | | | |")


if __name__ == "__main__":
    main()
