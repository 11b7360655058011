"""Load: 100,000 rows in 2,000 payloads through an endpoint that autoscaling takes from zero to four
instances and back to zero; every row must come back exactly once."""

from __future__ import annotations

import threading
import time

from .conftest import RunCheck, control, counts, deploy, frame, measure, wait_for

ROWS, ROWS_PER_PAYLOAD, MAX_INSTANCES = 100_000, 50, 4


def test_100k_rows_in_2000_payloads_scaling_from_zero_to_four_and_back(suite, record):
    df = frame(ROWS, seed=100)
    with deploy(max_instances=MAX_INSTANCES) as ep:
        # registered min 0 .. max 4: idle, the target-tracking policy takes the new endpoint to zero by itself
        wait_for(lambda: counts(ep.name)["instances"] == 0 and counts(ep.name)["desired"] == 0, 120,
                 "autoscaling to take the idle endpoint to zero")
        run = RunCheck.of(ep, "load", df, ROWS_PER_PAYLOAD)
        samples, stop = [], threading.Event()

        def sample():  # instances and backlog as the emulator reports them, twice a second
            while not stop.wait(0.5):
                now = counts(ep.name)
                samples.append((time.monotonic(), now["instances"], now["backlog"]))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            result = ep.predict(df, rows_per_payload=ROWS_PER_PAYLOAD, run_id=run.paths.run_id, progress=False)
        finally:
            stop.set()
            sampler.join()
        finished = time.monotonic()
        after = counts(ep.name)
        # back to zero by autoscaling alone (this holder still leases the endpoint: no teardown involved)
        wait_for(lambda: counts(ep.name)["instances"] == 0 and counts(ep.name)["desired"] == 0, 120,
                 "autoscaling to take the endpoint back to zero")
        at_zero = time.monotonic()
        run.take_counts(ep.name)
    peak = max(n for _, n, _ in samples)
    to_peak = next((t for t, n, _ in samples if n == peak), started) - started
    m = result.metrics
    numbers = {"rows_per_second": round(m.rows_per_second), "wall_seconds": round(m.seconds, 1),
               "max_instances": max(peak, m.max_instances_seen), "seconds_to_max_instances": round(to_peak, 1),
               "seconds_back_to_zero_after_the_run": round(at_zero - finished, 1),
               "instance_seconds": round(m.instance_seconds, 1), "payloads": m.payloads,
               "requests_received": sum(run.received.values()), "model_executions": sum(run.executed.values())}
    figures = record(measure(f"load: {ROWS:,} rows in {ROWS // ROWS_PER_PAYLOAD:,} payloads, 0 -> "
                             f"{numbers['max_instances']} -> 0 instances", [run], [ep.name],
                             [(result.predictions, result.failures)],
                             notes=f"{numbers['rows_per_second']:,} rows/s over {numbers['wall_seconds']} s; "
                                   f"{numbers['max_instances']} instances after {numbers['seconds_to_max_instances']} s; "
                                   f"back to 0 instances {numbers['seconds_back_to_zero_after_the_run']} s after the "
                                   "run; backlog 0", numbers=numbers))
    assert result.failures.empty and m.payloads == ROWS // ROWS_PER_PAYLOAD
    # every payload received once and run once: the emulator's own counts
    assert len(run.received) == ROWS // ROWS_PER_PAYLOAD and set(run.received.values()) == {1}
    assert run.executed == run.received
    assert after["backlog"] == 0 and after["queued"] == 0
    assert numbers["max_instances"] == MAX_INSTANCES, samples
    figures.check()
