"""The fan-out step type on a larger generated DataFrame: deploy -> score 4 row shards in a foreach (each
a Metaflow task) -> gather -> teardown. Only ``start`` and ``end`` are written here.

    python flows/fanout_flow.py run --rows 200000
"""

from metaflow import FlowSpec, Parameter, step

from mf_sm_async import AsyncInferenceFlow


class FanoutFlow(AsyncInferenceFlow, FlowSpec):
    inference = {"model": "clf", "input": "features", "output": "predictions", "shards": 4,
                 "max_instances": 2, "rows_per_payload": 1000, "teardown": "zero"}
    rows = Parameter("rows", default=100_000, help="rows to generate and score")

    @step
    def start(self):
        import numpy as np
        import pandas as pd
        from sklearn.linear_model import LogisticRegression

        rng = np.random.default_rng(0)
        values = rng.normal(size=(self.rows, 8))
        self.features = pd.DataFrame(values, columns=[f"x{n}" for n in range(8)])
        labels = (values[:, 0] + values[:, 1] > 0).astype(int)
        self.labels = labels
        self.clf = LogisticRegression().fit(values[:5000], labels[:5000])
        self.next(self.deploy)

    @step
    def end(self):
        accuracy = float((self.predictions["prediction"].to_numpy() == self.labels).mean())
        self.accuracy = accuracy
        m = self.predictions_metrics
        print(f"scored {m['rows']} rows in {m['shards']} shards ({m['rows_failed']} failed), "
              f"accuracy {accuracy:.3f}")


if __name__ == "__main__":
    FanoutFlow()
