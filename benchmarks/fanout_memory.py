"""The client's memory: a million-row DataFrame in one ``ep.predict`` call, and one 1 GiB payload.

    python benchmarks/fanout_memory.py [--rows 1000000] [--columns 64] [--gib 1] [--skip-predict] [--skip-payload]

Each client runs in a child process of its own (this script with ``--child``), so what it measures is the
client alone: the daemon, rclone and the model servers are other processes. The child reads its RSS
right after its input exists (the DataFrame built, or the clients made by a small warm-up invocation),
then resets its peak (``echo 5 > /proc/self/clear_refs``: building the frame passes through temporary
copies that are not the engine's) and reads ``VmHWM`` at the end: peak RSS growth = VmHWM - that RSS.

a. ``ep.predict(df)`` on ``--rows`` x ``--columns`` float64 (default 1,000,000 x 64: 488 MiB), JSON Lines,
   the engine's default payload size, on the row-sum model (2 instances x 4); every prediction is checked
   against the row's sum after the peak is read. Target: peak RSS growth <= 3x the DataFrame's memory.
b. ``ep.invoke_async(path)`` of a ``--gib`` GiB file of random bytes (written to a temporary directory)
   to a model whose handler answers the byte count, then ``.result()``. Target: growth <= 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fanout_common import (ROWSUM_MODEL, byte_count_model, deploy, mb, own_emulator, proc_status_kb,
                           reset_peak)


# the children -------------------------------------------------------------------------------------------

def child_predict(name: str, rows: int, columns: int, rows_per_payload: int | None) -> dict:
    import numpy as np
    import pandas as pd

    from mf_sm_async import AsyncEndpoint

    ep = AsyncEndpoint.attach(name)
    values = np.empty((rows, columns))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 100_000):
        values[start:start + 100_000] = rng.normal(size=(min(100_000, rows - start), columns))
    df = pd.DataFrame(values, columns=[f"f{n}" for n in range(columns)], copy=False)
    del values
    frame_bytes = int(df.memory_usage(deep=True).sum())
    baseline_kb, reset = proc_status_kb("VmRSS"), reset_peak()
    started = time.perf_counter()
    result = ep.predict(df, rows_per_payload=rows_per_payload, progress=False)
    seconds = time.perf_counter() - started
    peak_kb = proc_status_kb("VmHWM")
    assert result.failures.empty, result.failures.head()
    np.testing.assert_array_equal(result.predictions["prediction"].to_numpy(),
                                  np.ascontiguousarray(df.to_numpy()).sum(axis=1))
    ep.teardown()  # releases the lease; the endpoint stays (attached: keep)
    return {"frame_bytes": frame_bytes, "baseline_kb": baseline_kb, "peak_kb": peak_kb, "peak_reset": reset,
            "seconds": seconds, "payloads": result.metrics.payloads, "rows": rows}


def child_payload(name: str, path: str) -> dict:
    from mf_sm_async import AsyncEndpoint

    ep = AsyncEndpoint.attach(name)
    assert json.loads(ep.invoke_async(b"warm-up", content_type="application/octet-stream").result(60)) == {"bytes": 7}
    baseline_kb, reset = proc_status_kb("VmRSS"), reset_peak()
    started = time.perf_counter()
    invocation = ep.invoke_async(path, content_type="application/octet-stream")
    sent = time.perf_counter()
    answer = json.loads(invocation.result(timeout=900))
    done = time.perf_counter()
    peak_kb = proc_status_kb("VmHWM")
    assert answer == {"bytes": os.path.getsize(path)}, answer
    ep.teardown()
    return {"baseline_kb": baseline_kb, "peak_kb": peak_kb, "peak_reset": reset, "send_seconds": sent - started,
            "result_seconds": done - sent, "bytes": os.path.getsize(path)}


def run_child(*args: str) -> dict:
    """This script as a child client; its last stdout line is its JSON report."""
    process = subprocess.run([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parent, check=True)
    return json.loads(process.stdout.strip().splitlines()[-1])


def write_payload(path: Path, gib: int) -> None:
    with open(path, "wb") as out:
        for _ in range(gib << 10):
            out.write(os.urandom(1 << 20))


# the parent ----------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=64)
    parser.add_argument("--rows-per-payload", type=int, default=None)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument("--skip-payload", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name, *rest = args.child
        if kind == "predict":
            rows, columns, per_payload = int(rest[0]), int(rest[1]), (int(rest[2]) or None)
            report = child_predict(name, rows, columns, per_payload)
        else:
            report = child_payload(name, rest[0])
        print(json.dumps(report), flush=True)
        return

    predicted = sent = None
    with own_emulator() as (home, state), tempfile.TemporaryDirectory(dir=home) as tmp:
        endpoints = []
        try:
            if not args.skip_predict:
                endpoints.append(deploy(ROWSUM_MODEL, instances=args.instances, concurrency=args.concurrency))
                predicted = run_child("predict", endpoints[-1].name, str(args.rows), str(args.columns),
                                      str(args.rows_per_payload or 0))
            if not args.skip_payload:
                endpoints.append(deploy(byte_count_model(Path(tmp) / "bytes"), instances=1, concurrency=1))
                path = Path(tmp) / "payload.bin"
                write_payload(path, args.gib)
                sent = run_child("payload", endpoints[-1].name, str(path))
        finally:
            for ep in endpoints:
                ep.teardown()

    print("\n| measure | value | target |\n|---|---|---|")
    if predicted:
        p = predicted
        growth = (p["peak_kb"] - p["baseline_kb"]) * 1024
        print(f"| ep.predict: {p['rows']:,} rows x {args.columns} float columns, {p['payloads']} payloads "
              f"| {p['seconds']:.1f} s, {p['rows'] / p['seconds']:,.0f} rows/s | finishes |")
        print(f"| the DataFrame (memory_usage(deep=True)) | {mb(p['frame_bytes']):,.0f} MiB | |")
        print(f"| client peak RSS growth during predict | {mb(growth):,.0f} MiB = "
              f"{growth / p['frame_bytes']:.2f}x the DataFrame | <= 3x |")
    if sent:
        s = sent
        growth = (s["peak_kb"] - s["baseline_kb"]) * 1024
        print(f"| ep.invoke_async(path) of {s['bytes'] / 2**30:g} GiB: upload + InvokeEndpointAsync "
              f"| {s['send_seconds']:.1f} s | |")
        print(f"| ... then .result() (the model reads it all, answers its size) | {s['result_seconds']:.1f} s | |")
        print(f"| client peak RSS growth | {growth / 1e6:,.0f} MB | <= 200 MB |")
    if (predicted and not predicted["peak_reset"]) or (sent and not sent["peak_reset"]):
        print("\n(the kernel refused to reset VmHWM: the peaks include building the input)")


if __name__ == "__main__":
    main()
