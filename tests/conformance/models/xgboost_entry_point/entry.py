"""An XGBoost script-mode entry point (what the SDK's XGBoostModel(entry_point=...) deploys): only
model_fn, so the XGBoost image's default input_fn (DMatrix from csv / libsvm), predict_fn and output_fn
do the rest."""

import os

import xgboost as xgb


def model_fn(model_dir):
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "xgboost-model"))
    return booster
