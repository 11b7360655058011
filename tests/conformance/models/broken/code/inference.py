def model_fn(model_dir):
    raise RuntimeError("weights are corrupt: cannot load model")
