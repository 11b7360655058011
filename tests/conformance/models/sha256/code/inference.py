"""Reads the whole payload and answers its size and sha256, so a test knows every byte arrived."""

import hashlib
import json


def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept):
    return json.dumps({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}), "application/json"
