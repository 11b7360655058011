"""A test model that takes 2 s to load, so an endpoint stays Creating long enough to be seen so even on a
loaded machine."""

import time


def model_fn(model_dir):
    time.sleep(2)
    return "loaded"


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    return data


def output_fn(prediction, accept):
    return prediction, accept or "application/octet-stream"
