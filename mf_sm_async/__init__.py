"""mf_sm_async: batch inference on SageMaker Asynchronous Inference from Metaflow and notebooks.

The emulator (``mf-sm-async local start``) runs the same boto3 code offline; see the README.
"""

from .errors import (AsyncInferenceError, ConfigError, DeployError, InvocationError, ModelError,
                     TargetError, TimeoutError)

__version__ = "0.1.0"

__all__ = ["AsyncInferenceError", "ConfigError", "DeployError", "InvocationError", "ModelError",
           "TargetError", "TimeoutError", "__version__"]
