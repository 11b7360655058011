"""``mf-sm-async demo``: the whole asynchronous inference round trip on the local emulator.

Trains a scikit-learn classifier on the digits data that ships with scikit-learn, deploys it with
``AsyncEndpoint`` (teardown="delete"), scores the test rows with ``ep.predict`` (the fan-out engine),
prints the accuracy, and deletes the endpoint and everything made for it. The flow of the Metaflow issue
replaces this as the README's main job.
"""

from __future__ import annotations

import time
import uuid


def _train():
    import pandas as pd
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    digits = load_digits(as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(digits.data, digits.target, test_size=0.25, random_state=0)
    model = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    return model, pd.DataFrame(x_test), y_test


def run_demo(rows_per_payload: int = 50, target: str = "local") -> float:
    """Run the demo and return the accuracy of the predictions that came back."""
    from .endpoint import AsyncEndpoint

    started = time.monotonic()
    model, x_test, y_test = _train()
    print(f"trained LogisticRegression on digits; scoring {len(x_test)} rows on the {target} target")
    with AsyncEndpoint.deploy(model=model, name=f"mf-sm-async-demo-{uuid.uuid4().hex[:8]}", max_instances=1,
                              teardown="delete", target=target) as ep:
        print(f"endpoint {ep.name} InService after {time.monotonic() - started:.1f}s")
        result = ep.predict(x_test, rows_per_payload=rows_per_payload)
        accuracy = float((result.predictions["prediction"] == y_test).mean())
        print(f"{result}; accuracy {accuracy:.3f}; total {time.monotonic() - started:.1f}s")
        if not result.failures.empty:
            print(f"{len(result.failures)} rows failed:\n{result.failures.head()}")
    print("deleted the endpoint, its config, model, topics, queue, scaling policies and alarm "
          "(results stay in S3)")
    return accuracy
