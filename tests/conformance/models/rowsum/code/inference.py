"""A test model behind our default handler's codecs: each row's output is the sum of its numbers.

Poison values make it misbehave the way real models do:
- a row holding -999 makes the whole payload fail (an exception in predict);
- a row holding -777 makes it return one row too few (a broken model);
- a row holding -555 makes it sleep 2 s (a slow row).
"""

import time

import numpy as np

from mf_sm_async.serving.sklearn_inference import input_fn, output_fn  # noqa: F401 (the real codecs)

__all__ = ["input_fn", "output_fn", "model_fn", "predict_fn"]


class RowSum:
    def predict(self, rows):
        values = np.asarray(rows, dtype=float)
        if (values == -999).any():
            raise ValueError("poison row: -999")
        if (values == -555).any():
            time.sleep(2)
        sums = values.sum(axis=1)
        return sums[:-1] if (values == -777).any() else sums


def model_fn(model_dir):
    return RowSum()


def predict_fn(data, model, context=None):
    return model.predict(data)
