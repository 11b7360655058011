"""Every error a user of mf_sm_async can see.

::

    AsyncInferenceError          headline + optional hint; base of all below
     ├── ConfigError             a configuration field is out of range (names field, value, allowed)
     ├── TargetError             the target (local emulator or AWS) cannot be reached or started
     ├── DeployError             model / endpoint could not be created or did not reach InService
     ├── InvocationError         an invocation was refused or could not be sent
     ├── ModelError              the model raised or returned something undecodable
     └── TimeoutError            waited longer than the caller allowed

Each error's ``str()`` is the one-line headline followed, where there is one, by a hint on how to fix it.
The Metaflow integration re-raises them as ``MetaflowException`` with the same headline.
"""

from __future__ import annotations


class AsyncInferenceError(Exception):
    """Base class: a one-line ``headline`` a user can act on and an optional ``hint``."""

    headline: str
    hint: str | None

    def __init__(self, headline: str, hint: str | None = None):
        self.headline = headline
        self.hint = hint
        super().__init__(headline if not hint else f"{headline}\n  hint: {hint}")


class ConfigError(AsyncInferenceError, ValueError):
    """A configuration value is invalid; the headline names the field, the value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str, hint: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is invalid: allowed {allowed}", hint)


class TargetError(AsyncInferenceError):
    """The local emulator or AWS could not be reached, started or configured."""


class DeployError(AsyncInferenceError):
    """The model or endpoint could not be created, or the endpoint went Failed."""


class InvocationError(AsyncInferenceError):
    """An invocation was refused by the endpoint or could not be sent."""


class ModelError(AsyncInferenceError):
    """The model raised on a payload or returned output that cannot be decoded."""


class TimeoutError(AsyncInferenceError):  # noqa: A001 - deliberate: mf_sm_async.TimeoutError
    """Waited longer than the caller allowed."""
