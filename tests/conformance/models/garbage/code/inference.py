"""A test model whose answer cannot be decoded when a payload holds a marker value: each row's output is
its sum (JSON Lines, or .npy when the Accept type asks for it), except that a payload with a row holding

- -1 is answered with bytes that are not UTF-8 (under the Accept type it was asked for);
- -2 is answered with UTF-8 text that is not JSON ("<html>...", as a proxy error page would be);
- -3 is answered with bytes that are not a .npy array when the Accept type is application/x-npy.
"""

import io
import json

import numpy as np


def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept):
    text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    values = np.asarray(rows, dtype=float).reshape(len(rows), -1)
    accept = (accept or "application/jsonlines").split(";")[0].strip()
    if (values == -1).any():
        return b"\xff\xfe\x00garbage\x80\x81", accept
    if (values == -2).any():
        return "<html><body>502 Bad Gateway</body></html>", accept
    if accept == "application/x-npy":
        if (values == -3).any():
            return b"\x93NUMPY garbage, not an array", accept
        buffer = io.BytesIO()
        np.save(buffer, values.sum(axis=1), allow_pickle=False)
        return buffer.getvalue(), accept
    return "".join(json.dumps(float(v)) + "\n" for v in values.sum(axis=1)), "application/jsonlines"
