"""An entry point as the scikit-learn image runs it from a sourcedir.tar.gz: only model_fn, so the
container's default input_fn / predict_fn / output_fn do the rest."""

import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
