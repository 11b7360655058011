"""mf_sm_async: batch inference on SageMaker Asynchronous Inference from Metaflow and notebooks.

The emulator (``mf-sm-async local start``) runs the same boto3 code offline; see the README.
"""

from .errors import (AsyncInferenceError, ConfigError, DeployError, InvocationError, ModelError,
                     TargetError, TimeoutError)

__version__ = "0.1.0"

__all__ = ["AsyncEndpoint", "AsyncInferenceError", "AsyncInferenceFlow", "BatchResult", "ProgressEvent",
           "async_inference", "ConfigError", "DeployError", "InvocationError", "ModelError",
           "TargetError", "TimeoutError", "__version__"]


def __getattr__(name: str):
    # Lazy, so a model-server process (which imports this package) does not pay for boto3 at start-up.
    if name == "AsyncEndpoint":
        from .endpoint import AsyncEndpoint

        return AsyncEndpoint
    if name == "async_inference":  # imports metaflow: only when asked for
        from .metaflow_ext.decorator import async_inference

        return async_inference
    if name == "AsyncInferenceFlow":
        from .metaflow_ext.step_type import AsyncInferenceFlow

        return AsyncInferenceFlow
    if name == "BatchResult":
        from .batch.result import BatchResult

        return BatchResult
    if name == "ProgressEvent":
        from .progress import ProgressEvent

        return ProgressEvent
    if name == "load_ipython_extension":  # `%load_ext mf_sm_async`
        from .notebook import load_ipython_extension

        return load_ipython_extension
    raise AttributeError(f"module 'mf_sm_async' has no attribute {name!r}")
