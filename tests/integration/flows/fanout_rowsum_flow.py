"""The step type on the row-sum test model; ``--poison`` rows fail, and with ``on_error="raise"`` a shard
task fails, so the run fails and the exit hook must tear the endpoint down."""

import os

from metaflow import FlowSpec, Parameter, step

from mf_sm_async import AsyncInferenceFlow

MODEL = os.path.join(os.path.dirname(__file__), "..", "..", "conformance", "models", "rowsum")


class FanoutRowSumFlow(AsyncInferenceFlow, FlowSpec):
    inference = {"model": MODEL, "input": "features", "output": "predictions", "shards": 3, "max_instances": 1,
                 "rows_per_payload": 25, "on_error": "raise", "teardown": "zero"}
    poison = Parameter("poison", default="", help="comma-separated row positions that fail")

    @step
    def start(self):
        import numpy as np
        import pandas as pd

        values = np.random.default_rng(1).normal(size=(300, 3))
        self.features = pd.DataFrame(values, index=[f"row-{n}" for n in range(300)], columns=list("xyz"))
        for position in filter(None, self.poison.split(",")):
            self.features.iloc[int(position), 0] = -999
        self.next(self.deploy)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FanoutRowSumFlow()
