"""A flow that does not import mf_sm_async: the decorator arrives with ``--with``."""

import os

from metaflow import FlowSpec, step


class PlainFlow(FlowSpec):
    @step
    def start(self):
        import pandas as pd

        self.features = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 30.0]})
        self.next(self.score)

    @step
    def score(self):
        self.next(self.end)

    @step
    def end(self):
        pass


MODEL = os.path.join(os.path.dirname(__file__), "..", "..", "conformance", "models", "rowsum")

if __name__ == "__main__":
    PlainFlow()
