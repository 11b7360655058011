"""A test flow: scores a generated DataFrame with the row-sum test model (each row's output is its sum).

Parameters choose the size and the misbehaving rows (see tests/conformance/models/rowsum): ``poison``
rows fail, ``slow`` rows take 2 s each (so a run can be interrupted mid-scoring).
"""

import os

from metaflow import FlowSpec, Parameter, current, step

from mf_sm_async import async_inference

MODEL = os.path.join(os.path.dirname(__file__), "..", "..", "conformance", "models", "rowsum")


class RowSumFlow(FlowSpec):
    rows = Parameter("rows", default=200)
    poison = Parameter("poison", default="", help="comma-separated row positions that fail")
    slow = Parameter("slow", default=0, help="every n-th row takes 2 s (0: none)")
    fail = Parameter("fail", default=False, type=bool, help="the score step's body raises")

    @step
    def start(self):
        import numpy as np
        import pandas as pd

        values = np.random.default_rng(0).normal(size=(self.rows, 4))
        self.features = pd.DataFrame(values, columns=list("abcd"), index=[f"r{n}" for n in range(self.rows)])
        for position in filter(None, self.poison.split(",")):
            self.features.iloc[int(position), 0] = -999
        if self.slow:
            self.features.iloc[::self.slow, 1] = -555
        self.next(self.score)

    @async_inference(model=MODEL, input="features", output="predictions", max_instances=1,
                     rows_per_payload=10, max_in_flight=4, teardown="zero")
    @step
    def score(self):
        self.endpoint_seen = current.async_inference.name
        if self.fail:
            raise RuntimeError("the step body failed on purpose")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RowSumFlow()
