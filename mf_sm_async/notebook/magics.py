"""``%sm_async`` and ``%%sm_async`` for notebooks (``%load_ext mf_sm_async`` registers them).

::

    %sm_async deploy NAME --model VAR_OR_PATH [--max-instances N] [--instance-type T]
                          [--teardown zero|delete|keep] [--endpoint-name E]
    %sm_async status [NAME]          # NAME: a variable holding an AsyncEndpoint, or an endpoint name
    %sm_async endpoints              # ours: name, status, age, instances, backlog
    %sm_async teardown NAME [--delete]
    %%sm_async predict NAME --input DF_VAR --output RESULT_VAR [--rows-per-payload N] [--max-in-flight N]
    <optional Python, run first in the notebook's namespace>

A user error (bad option, unknown variable or endpoint, an ``AsyncInferenceError``) prints one line to
stderr instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..errors import AsyncInferenceError
from .widget import ProgressPanel


class UsageError(Exception):
    """A problem with what the user typed; shown as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit the kernel's process
        raise UsageError(f"{self.prog}: {message}")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _parsers() -> dict[str, argparse.ArgumentParser]:
    def parser(command: str) -> argparse.ArgumentParser:
        return _Parser(prog=f"%sm_async {command}", add_help=False, exit_on_error=False)

    deploy = parser("deploy")
    deploy.add_argument("name")
    deploy.add_argument("--model", required=True)
    deploy.add_argument("--max-instances", type=_positive)
    deploy.add_argument("--instance-type")
    deploy.add_argument("--teardown", choices=["zero", "delete", "keep"])
    deploy.add_argument("--endpoint-name")
    status = parser("status")
    status.add_argument("name", nargs="?")
    endpoints = parser("endpoints")
    teardown = parser("teardown")
    teardown.add_argument("name")
    teardown.add_argument("--delete", action="store_true")
    predict = parser("predict")
    predict.add_argument("name")
    predict.add_argument("--input", required=True)
    predict.add_argument("--output", required=True)
    predict.add_argument("--rows-per-payload", type=_positive)
    predict.add_argument("--max-in-flight", type=_positive)
    return {"deploy": deploy, "status": status, "endpoints": endpoints, "teardown": teardown, "predict": predict}


@magics_class
class SmAsyncMagics(Magics):
    """The ``sm_async`` magic: the first word picks the command; ``predict`` is a cell magic."""

    @line_cell_magic
    def sm_async(self, line: str, cell: str | None = None):
        try:
            words = shlex.split(line)
        except ValueError as error:
            return self._fail(f"%sm_async: {error}")
        parsers = _parsers()
        if not words or words[0] not in parsers:
            return self._fail(f"%sm_async: expected one of {', '.join(parsers)}, got {' '.join(words[:1]) or 'nothing'}")
        command = words[0]
        if command == "predict" and cell is None:
            return self._fail("%sm_async predict is a cell magic: start the cell with %%sm_async predict")
        if command != "predict" and cell is not None:
            return self._fail(f"%%sm_async {command} is a line magic: use %sm_async {command}")
        try:
            args = parsers[command].parse_args(words[1:])
            getattr(self, f"_{command}")(args, *([cell] if command == "predict" else []))
        except (UsageError, argparse.ArgumentError) as error:
            return self._fail(str(error) if isinstance(error, UsageError) else f"%sm_async {command}: {error}")
        except AsyncInferenceError as error:
            return self._fail(f"%sm_async {command}: {error.headline}")

    @staticmethod
    def _fail(message: str) -> None:
        print(message, file=sys.stderr)

    # resolving names ----------------------------------------------------------------------------
    def _endpoint(self, name: str):
        """A variable holding an AsyncEndpoint, else the endpoint of that name (attached, no lease)."""
        from ..endpoint import AsyncEndpoint

        value = self.shell.user_ns.get(name)
        if isinstance(value, AsyncEndpoint):
            return value
        if value is not None and name.isidentifier():
            raise UsageError(f"{name} is a {type(value).__name__}, not an AsyncEndpoint")
        return AsyncEndpoint.attach(name, hold=False)

    def _variable(self, name: str, option: str):
        if name not in self.shell.user_ns:
            raise UsageError(f"{option} {name}: no variable named {name!r} in the notebook")
        return self.shell.user_ns[name]

    # commands -----------------------------------------------------------------------------------
    def _deploy(self, args) -> None:
        from ..config import EndpointSpec
        from ..endpoint import AsyncEndpoint

        if not args.name.isidentifier():
            raise UsageError(f"%sm_async deploy: {args.name!r} is not a valid Python variable name")
        if args.model in self.shell.user_ns:
            model = self.shell.user_ns[args.model]
        elif args.model.startswith("s3://") or os.path.exists(args.model):
            model = args.model
        else:
            raise UsageError(f"--model {args.model}: no variable or path named {args.model!r}")
        options = {key: value for key, value in {
            "max_instances": args.max_instances, "instance_type": args.instance_type,
            "teardown": args.teardown, "name": args.endpoint_name}.items() if value is not None}
        EndpointSpec.from_kwargs(**options)  # a bad option fails here, before anything is shown
        panel = ProgressPanel(f"deploy {args.name}", bar=False)
        panel.status("deploying...")
        started = time.monotonic()
        try:
            ep = AsyncEndpoint.deploy(model=model, **options)
        except AsyncInferenceError as error:
            panel.status(f"failed: {error.headline}")
            raise
        panel.status(f"endpoint {ep.name} InService after {time.monotonic() - started:.1f}s "
                     f"(teardown {ep.teardown_mode}); bound to {args.name}")
        self.shell.user_ns[args.name] = ep

    def _status(self, args) -> None:
        from ..endpoint import AsyncEndpoint

        if args.name:
            endpoints = [self._endpoint(args.name)]
        else:
            endpoints = [v for k, v in self.shell.user_ns.items()
                         if isinstance(v, AsyncEndpoint) and not k.startswith("_")]
            if not endpoints:
                raise UsageError("%sm_async status: no AsyncEndpoint in the notebook's variables; name one")
        rows = []
        for ep in dict.fromkeys(endpoints):
            s = ep.status()
            rows.append({"name": s.name, "status": s.status, "instances": s.instances,
                         "desired": s.desired_instances, "backlog": s.backlog,
                         "oldest request (s)": s.oldest_request_age_seconds, "recent failures": s.recent_failures})
        self._table(rows)

    def _endpoints(self, args) -> None:
        from ..endpoint import list_managed

        rows = [{"name": e.name, "status": e.status, "age": _age(e.age_seconds), "instances": e.instances,
                 "backlog": e.backlog} for e in list_managed()]
        if not rows:
            print("no endpoints made by mf-sm-async")
            return
        self._table(rows)

    def _teardown(self, args) -> None:
        from ..endpoint import teardown_managed

        ep = self._endpoint(args.name)
        if ep.lease is not None:
            ep.teardown("keep")  # release this notebook's lease; the order below is explicit
        teardown_managed(ep.name, delete=args.delete, target=ep.target)
        print(f"endpoint {ep.name} {'deleted' if args.delete else 'scaled to zero'}")

    def _predict(self, args, cell: str) -> None:
        from ..config import BatchSpec

        if cell.strip():
            outcome = self.shell.run_cell(cell, store_history=False)
            if not outcome.success:
                return  # the body's own error has been shown
        ep = self._endpoint(args.name)
        frame = self._variable(args.input, "--input")
        if not hasattr(frame, "iloc"):
            raise UsageError(f"--input {args.input}: a {type(frame).__name__}, not a pandas DataFrame")
        options = {key: value for key, value in {
            "rows_per_payload": args.rows_per_payload, "max_in_flight": args.max_in_flight}.items()
            if value is not None}
        BatchSpec.from_kwargs(**options)  # a bad option fails here, before anything is shown
        panel = ProgressPanel(f"predict {ep.name}")
        result = ep.predict(frame, progress=panel, **options)
        self.shell.user_ns[args.output] = result

    def _table(self, rows: list[dict]) -> None:
        import pandas as pd
        from IPython.display import display

        with pd.option_context("display.max_columns", None, "display.width", 250):
            display(pd.DataFrame(rows))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
