"""The fan-out step type: a flow base class whose steps deploy -> score row shards in a foreach (each
shard a Metaflow task of its own, so ``@batch`` / ``@kubernetes`` spread the client work) -> gather ->
teardown. Only ``start`` (which sets the DataFrame) and ``end`` are the user's to write::

    class FanoutFlow(AsyncInferenceFlow):
        inference = {"model": "clf", "input": "features", "output": "predictions", "shards": 4,
                     "max_instances": 2, "rows_per_payload": 1000, "teardown": "zero"}

        @step
        def start(self):
            self.features = ...
            self.clf = ...
            self.next(self.deploy)

        @step
        def end(self):
            print(self.predictions_metrics)

``inference`` takes the arguments of ``@async_inference`` plus ``shards`` (number of foreach tasks). It
is checked when the flow file is loaded, before any step runs. An exit hook tears the endpoint down when
any step fails. (Inherit ``FlowSpec`` too, ``class F(AsyncInferenceFlow, FlowSpec)``, for the Runner API.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from metaflow import FlowSpec, card, exit_hook, step

from ..errors import ConfigError
from .card import CARD_ID
from .decorator import AsyncInferenceException, async_inference

_SHARD = "shard_{}"


def _settings(cls) -> tuple[async_inference, int]:
    options = dict(getattr(cls, "_inference_settings", None) or {})
    shards = options.pop("shards", 2)
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= 1000:
        raise AsyncInferenceException(f"inference['shards']={shards!r} is invalid: allowed an integer from 1 to 1000")
    decorator = async_inference(**options)
    decorator.external_init()  # validates, naming the argument
    return decorator, shards


def teardown_after_failure(run=None) -> None:
    """Exit hook: a failed run still tears its endpoint down (by the mode its flow asked for)."""
    from ..endpoint import teardown_managed

    try:
        task = run["deploy"].task
        name, mode = task.data.endpoint_name, task.data.teardown_mode
    except Exception as error:  # the run failed before deploy: nothing to tear down
        print(f"[mf-sm-async] no endpoint to tear down: {error}")
        return
    if mode != "keep":
        teardown_managed(name, delete=mode == "delete")
        print(f"[mf-sm-async] {name}: {'deleted' if mode == 'delete' else 'scaled to zero'} after the failure")


@exit_hook(on_error=["mf_sm_async.metaflow_ext.step_type.teardown_after_failure"])
class AsyncInferenceFlow(FlowSpec):
    inference: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "inference" in cls.__dict__:
            # kept aside: Metaflow turns class attributes into read-only artifacts of the run
            cls._inference_settings = dict(cls.__dict__["inference"])
            _settings(cls)  # at import of the flow file: a bad setting stops the run before any step

    @step
    def deploy(self):
        """Deploy (or attach), then cut the input into shards, one artifact each."""
        decorator, shards = _settings(type(self))
        frame = getattr(self, decorator.input)
        endpoint = decorator.open_endpoint(self)
        self.endpoint_name = endpoint.name
        self.teardown_mode = endpoint.teardown_mode
        endpoint.teardown("keep")  # releases this task's lease; the shard tasks take their own
        bounds = np.linspace(0, len(frame), min(shards, max(len(frame), 1)) + 1).astype(int)
        for n, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            setattr(self, _SHARD.format(n), frame.iloc[start:stop])
        self.shard_numbers = list(range(len(bounds) - 1))
        self.next(self.score_shard, foreach="shard_numbers")

    @card(type="blank", id=CARD_ID, refresh_interval=1)
    @step
    def score_shard(self):
        """Score one shard: this task loads its own shard artifact, never the whole input."""
        from ..endpoint import AsyncEndpoint

        decorator, _ = _settings(type(self))
        shard = getattr(self, _SHARD.format(self.input))
        endpoint = AsyncEndpoint.attach(self.endpoint_name, target=decorator.endpoint_spec.target)
        try:
            result = decorator.score(endpoint, shard, self, "score_shard",
                                     f"shard {self.input}: {len(shard)} rows on {self.endpoint_name}")
        except ConfigError as error:
            raise AsyncInferenceException(str(error)) from None
        finally:
            endpoint.teardown("keep")  # releases the lease; the gather step decides the endpoint's fate
        self.shard_predictions, self.shard_failures = result.predictions, result.failures
        self.shard_metrics = result.metrics.as_dict()
        self.shard_artifacts_loaded = sorted(k for k in vars(self) if k.startswith("shard_") or k == decorator.input)
        self.next(self.gather)

    @step
    def gather(self, inputs):
        """Join the shards' results in input order, then tear the endpoint down."""
        from ..endpoint import AsyncEndpoint

        decorator, _ = _settings(type(self))
        ordered = sorted(inputs, key=lambda i: i.input)
        out = decorator.output
        setattr(self, out, pd.concat([i.shard_predictions for i in ordered]))
        setattr(self, f"{out}_failures", pd.concat([i.shard_failures for i in ordered]))
        metrics = [i.shard_metrics for i in ordered]
        setattr(self, f"{out}_metrics", {
            "rows": sum(m["rows"] for m in metrics), "rows_failed": sum(m["rows_failed"] for m in metrics),
            "payloads": sum(m["payloads"] for m in metrics), "shards": len(metrics),
            "seconds": max(m["seconds"] for m in metrics), "shard_metrics": metrics})
        # the user's own artifacts (labels, ...) go on to `end`; the shards' results were gathered above
        self.merge_artifacts(inputs, exclude=["shard_predictions", "shard_failures", "shard_metrics",
                                              "shard_artifacts_loaded"])
        setattr(self, f"{out}_endpoint", self.endpoint_name)
        endpoint = AsyncEndpoint.attach(self.endpoint_name, target=decorator.endpoint_spec.target)
        endpoint.teardown(self.teardown_mode)
        self.next(self.end)
