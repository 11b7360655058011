"""The smallest useful model: returns its input, so the benchmark can check every byte came back."""


def model_fn(model_dir):
    return None


def transform_fn(model, input_data, content_type, accept):
    return input_data, content_type or "application/octet-stream"
