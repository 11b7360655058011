"""``@async_inference``: deploy (or attach) before the step body, score ``self.<input>`` into
``self.<output>`` after it, and tear down in every case.

    class ScoreFlow(FlowSpec):
        @async_inference(model="clf", input="features", output="predictions", max_instances=2)
        @step
        def score(self):
            self.next(self.end)

``model`` is the name of an artifact of the flow (a fitted estimator, or a path / URI string) when the
flow has one by that name, else a model directory, an ``s3://.../model.tar.gz`` (with ``image_uri=``) or
an existing SageMaker model's name. ``endpoint_name=`` attaches to an existing endpoint instead (kept at
teardown). The other arguments are those of ``AsyncEndpoint.deploy`` and ``ep.predict``.

Artifacts written: ``<output>`` (a DataFrame aligned to the input), ``<output>_failures``,
``<output>_metrics`` (a dict), ``<output>_endpoint`` (the endpoint's name) and ``<output>_run`` (the
run id: the S3 prefix ``runs/<run id>/`` of the endpoint holds its inputs, manifest and outputs).
"""

from __future__ import annotations

import dataclasses
import logging

from metaflow.exception import MetaflowException
from metaflow.user_decorators.user_step_decorator import StepMutator, UserStepDecorator

from ..config import BatchSpec, EndpointSpec
from ..errors import AsyncInferenceError, ConfigError
from .card import CARD_ID, CardSink
from .signals import InterruptsRaise

log = logging.getLogger(__name__)

_ENDPOINT_ARGS = {f.name for f in dataclasses.fields(EndpointSpec)} - {"name"}
_BATCH_ARGS = {f.name for f in dataclasses.fields(BatchSpec)} - {"progress", "resume", "run_id"}
_OWN_ARGS = {"model", "input", "output", "endpoint_name", "name"}


class AsyncInferenceException(MetaflowException):
    headline = "@async_inference"


def _ident(field: str, value) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise ConfigError(field, value, "the name of an artifact (a Python identifier)")
    return value


def run_id_for(current, step_name: str, flow) -> str:
    """Stable across ``resume`` (origin run id) and ``@retry`` (no task id or attempt in it), distinct per
    foreach task, so a re-run finds the manifest and journal of the attempt that died."""
    origin = current.origin_run_id or current.run_id
    index = "-".join(str(frame.index) for frame in getattr(flow, "_foreach_stack", None) or [])
    return f"{current.flow_name}-{origin}-{step_name}" + (f"-{index}" if index else "")


class async_inference(StepMutator, UserStepDecorator):  # noqa: N801 - Metaflow decorators are lowercase
    def init(self, *args, **kwargs):
        if args:
            raise AsyncInferenceException("@async_inference takes keyword arguments only, e.g. model=\"clf\"")
        unknown = sorted(set(kwargs) - _ENDPOINT_ARGS - _BATCH_ARGS - _OWN_ARGS)
        try:
            if unknown:
                allowed = ", ".join(sorted(_ENDPOINT_ARGS | _BATCH_ARGS | _OWN_ARGS))
                raise ConfigError(unknown[0], kwargs[unknown[0]], "one of: " + allowed)
            self.input = _ident("input", kwargs.get("input", "features"))
            self.output = _ident("output", kwargs.get("output", "predictions"))
            self.model = kwargs.get("model")
            self.endpoint_name = kwargs.get("endpoint_name")
            if (self.model is None) == (self.endpoint_name is None):
                raise ConfigError("model", self.model, "exactly one of model= and endpoint_name=")
            if self.model is not None and not (isinstance(self.model, str) and self.model):
                raise ConfigError("model", self.model, "an artifact name, a model directory, an s3:// URI or a "
                                  "SageMaker model name (a non-empty string)")
            endpoint = {k: v for k, v in kwargs.items() if k in _ENDPOINT_ARGS}
            if "name" in kwargs:
                endpoint["name"] = kwargs["name"]
            self.endpoint_spec = EndpointSpec.from_kwargs(**endpoint)
            self.batch_options = {k: v for k, v in kwargs.items() if k in _BATCH_ARGS}
            BatchSpec.from_kwargs(**self.batch_options)  # checked now, before any task runs
        except ConfigError as error:
            raise AsyncInferenceException(f"@async_inference argument {error.field}: {error}") from None
        self.endpoint_options = endpoint

    def mutate(self, mutable_step):
        self.external_init()  # with --with, mutate may run before init
        mutable_step.add_decorator("card", deco_kwargs={"type": "blank", "id": CARD_ID, "refresh_interval": 1})

    # in the task ------------------------------------------------------------------------------------
    def pre_step(self, step_name, flow, inputs=None):
        from metaflow import current

        self._interrupts = InterruptsRaise().__enter__()
        try:
            self.endpoint = self.open_endpoint(flow)
        except BaseException:
            self._interrupts.__exit__(None, None, None)
            raise
        current._update_env({"async_inference": self.endpoint})
        return None

    def open_endpoint(self, flow):
        """Attach to ``endpoint_name``, or deploy ``model`` (also used by the step type)."""
        from ..endpoint import AsyncEndpoint

        if self.endpoint_name:
            return AsyncEndpoint.attach(self.endpoint_name, target=self.endpoint_spec.target)
        return AsyncEndpoint.deploy(model=self._model_of(flow), **self.endpoint_options)

    def score(self, endpoint, frame, flow, step_name: str, title: str):
        """``endpoint.predict(frame)`` with the card as progress and the run id that resume / @retry find."""
        from metaflow import current

        return endpoint.predict(frame, progress=CardSink(title, len(frame)), run_id=run_id_for(current, step_name, flow),
                                resume=True, **self.batch_options)

    def _model_of(self, flow):
        """The artifact named ``model`` if the flow has one (not a step or method), else the string."""
        name = self.model
        value = getattr(flow, name, None) if name.isidentifier() else None
        return name if value is None or callable(getattr(value, "__func__", None)) else value

    def post_step(self, step_name, flow, exception=None):
        try:
            if exception is None:
                frame = getattr(flow, self.input, None)
                if frame is None:
                    raise AsyncInferenceException(f"@async_inference input={self.input!r}: the step has no "
                                                  f"artifact self.{self.input} to score")
                result = self.score(self.endpoint, frame, flow, step_name,
                                    f"scoring self.{self.input} on {self.endpoint.name}")
                setattr(flow, self.output, result.predictions)
                setattr(flow, f"{self.output}_failures", result.failures)
                setattr(flow, f"{self.output}_metrics", result.metrics.as_dict())
                setattr(flow, f"{self.output}_endpoint", self.endpoint.name)
                setattr(flow, f"{self.output}_run", result.metrics.run_id)
        except AsyncInferenceError as error:
            exception = AsyncInferenceException(str(error))
        except Exception as error:  # an interrupt while scoring, a network failure: teardown all the same
            exception = error
        finally:
            self._teardown()
        if exception is not None:
            return exception, None
        return None, None

    def _teardown(self) -> None:
        try:
            self.endpoint.teardown()
        except Exception as error:  # the lease expires by itself; do not hide the step's own outcome
            log.warning("teardown of %s failed: %s", self.endpoint.name, error)
        finally:
            self._interrupts.__exit__(None, None, None)

