"""Train a scikit-learn classifier on the digits data, score it on an asynchronous endpoint with
``@async_inference``, and report the accuracy.

    python flows/digits_flow.py run                       # on the local emulator (offline)
    MF_SM_ASYNC_TARGET=aws python flows/digits_flow.py run  # on AWS (needs MF_SM_ASYNC_ROLE_ARN)
"""

from metaflow import FlowSpec, Parameter, current, step

from mf_sm_async import async_inference


class DigitsFlow(FlowSpec):
    rows_per_payload = Parameter("rows_per_payload", default=50, help="rows per async invocation")

    @step
    def start(self):
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        digits = load_digits(as_frame=True)
        x_train, self.features, y_train, self.labels = train_test_split(
            digits.data, digits.target, test_size=0.25, random_state=0)
        self.clf = LogisticRegression(max_iter=2000).fit(x_train, y_train)
        self.next(self.score)

    @async_inference(model="clf", input="features", output="predictions", max_instances=2,
                     rows_per_payload=50, teardown="zero")
    @step
    def score(self):
        print(f"scoring {len(self.features)} rows on {current.async_inference.name}")
        self.next(self.end)

    @step
    def end(self):
        accuracy = float((self.predictions["prediction"] == self.labels).mean())
        self.accuracy = accuracy
        m = self.predictions_metrics
        print(f"accuracy {accuracy:.3f} on {m['rows']} rows ({m['rows_failed']} failed) "
              f"in {m['seconds']:.1f}s, {m['rows_per_second']:.0f} rows/s")


if __name__ == "__main__":
    DigitsFlow()
