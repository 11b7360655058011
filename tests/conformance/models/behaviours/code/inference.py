"""A test model whose behaviour the payload chooses; it also measures its own concurrency.

Payload JSON: {"op": "echo" | "raise" | "sleep", "value": ..., "seconds": s}
Output JSON: {"echo": value, "in_flight": n, "max_in_flight": m, "pid": pid}
"""

import json
import os
import threading
import time

_lock = threading.Lock()
_state = {"in_flight": 0, "max": 0}


def model_fn(model_dir):
    with open(os.path.join(model_dir, "greeting.txt")) as handle:
        return handle.read().strip()


def input_fn(body, content_type):
    return json.loads(body)


def predict_fn(data, model):
    with _lock:
        _state["in_flight"] += 1
        _state["max"] = max(_state["max"], _state["in_flight"])
        in_flight = _state["in_flight"]
    try:
        if data.get("op") == "raise":
            raise ValueError(f"poison payload {data.get('value')!r}")
        if data.get("op") == "sleep":
            time.sleep(float(data["seconds"]))
        return {"echo": data.get("value"), "greeting": model, "in_flight": in_flight,
                "max_in_flight": _state["max"], "pid": os.getpid()}
    finally:
        with _lock:
            _state["in_flight"] -= 1


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
