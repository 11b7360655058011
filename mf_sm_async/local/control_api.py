"""The emulator's own API on its loopback URL, under ``/_mf_sm_async/``: health, counts, faults.

    GET    /_mf_sm_async/health            {"ok", "pid", "version", "time_scale"}
    GET    /_mf_sm_async/counts            per endpoint: received, processed, failed, expired, backlog,
                                           instances, desired, pids, instance_deaths, per_inference_id (runs),
                                           received_per_inference_id (requests)
    POST   /_mf_sm_async/faults            {"kind": "s3_slowdown" | "throttle" | "lose_notification",
                                            "count": N and / or "seconds": S,
                                            "endpoint" | "bucket" | "method": ...}
    GET    /_mf_sm_async/faults            the faults still armed, and how many events each kind has hit
    DELETE /_mf_sm_async/faults            disarm all
    POST   /_mf_sm_async/kill-instance     {"endpoint": NAME, "region": "us-east-1", "signal": 9, "pid": P}
                                           kills one running model-server process (``pid``, else the
                                           first); answers its pid
    POST   /_mf_sm_async/hang-instance     {"endpoint": NAME, "region": "us-east-1", "seconds": S, "pid": P}
                                           stops one model-server process for S seconds (0 < S <= 3600),
                                           then lets it carry on; answers its pid
"""

from __future__ import annotations

import json
import os
import signal

from .. import __version__
from .faults import freeze
from .wire import AwsError, json_response

PREFIX = "/_mf_sm_async/"


def handle(emulator, route: str, method: str, body: bytes, start_response):
    if route == "health" and method == "GET":
        return json_response(start_response, 200, {"ok": True, "pid": os.getpid(), "version": __version__,
                                                    "time_scale": emulator.clock.time_scale})
    if route == "counts" and method == "GET":
        return json_response(start_response, 200, {
            f"{region}/{name}": {
                "received": rt.counters.received, "processed": rt.counters.processed,
                "failed": rt.counters.failed, "expired": rt.counters.expired,
                "instance_deaths": rt.counters.instance_deaths, "backlog": rt.backlog, "queued": rt.queued,
                "instances": rt.current_instances, "desired": rt.desired, "pids": rt.instance_pids(),
                "per_inference_id": dict(rt.counters.per_inference_id),
                "received_per_inference_id": dict(rt.counters.received_per_inference_id),
            } for (region, name), rt in list(emulator.control.runtimes.items())})
    if route == "faults":
        if method == "GET":
            return json_response(start_response, 200, {"armed": emulator.faults.pending(),
                                                        "hits": dict(emulator.faults.hits)})
        if method == "DELETE":
            emulator.faults.clear()
            return json_response(start_response, 200, {"armed": []})
        if method == "POST":
            request = _json(body)
            try:
                emulator.faults.arm(request.pop("kind", None), request.pop("count", None), request.pop("seconds", None),
                                    **request)
            except (TypeError, ValueError) as exc:
                raise AwsError("ValidationError", str(exc), 400) from None
            return json_response(start_response, 200, {"armed": emulator.faults.pending()})
    if route == "kill-instance" and method == "POST":
        request = _json(body)
        pid = _instance(emulator, request)
        os.kill(pid, int(request.get("signal", signal.SIGKILL)))
        return json_response(start_response, 200, {"killed": pid})
    if route == "hang-instance" and method == "POST":
        request = _json(body)
        seconds = request.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
            raise AwsError("ValidationError", f"seconds={seconds!r} is invalid: allowed a number above 0 and "
                           "at most 3600", 400)
        pid = _instance(emulator, request)
        freeze(pid, float(seconds))
        return json_response(start_response, 200, {"hung": pid, "seconds": seconds})
    raise AwsError("NotFound", f"no control route {method} {PREFIX}{route}", 404)


def _instance(emulator, request: dict) -> int:
    """The pid of the model-server process a request names (``pid``), else the endpoint's first."""
    runtime = emulator.control.runtime(request.get("region", "us-east-1"), request.get("endpoint", ""))
    if runtime is None:
        raise AwsError("ValidationError", f"endpoint={request.get('endpoint')!r} is not running here", 400)
    pids = runtime.instance_pids()
    if not pids:
        raise AwsError("ValidationError", f"endpoint {request['endpoint']} has no running instance", 400)
    pid = request.get("pid", pids[0])
    if pid not in pids:
        raise AwsError("ValidationError", f"pid={pid!r} is invalid: allowed one of the endpoint's model-server "
                       f"processes {pids}", 400)
    return pid


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise AwsError("ValidationError", f"the body is not JSON: {exc}", 400) from None
    if not isinstance(value, dict):
        raise AwsError("ValidationError", "the body must be a JSON object", 400)
    return value
