"""The ``mf-sm-async`` command: parses arguments and calls the package; no logic of its own.

    mf-sm-async local serve|start|status|stop|env
    mf-sm-async endpoints list | teardown NAME [--delete] | logs NAME
    mf-sm-async cleanup --older-than 2h
    mf-sm-async predict --endpoint NAME --input data.parquet|csv --output out.parquet|csv
    mf-sm-async demo
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .errors import AsyncInferenceError, ConfigError


def _local(args) -> int:
    from . import aws
    from .local import daemon, sdk_config

    state_dir = args.state_dir
    if args.action == "serve":
        daemon.serve(state_dir, host=args.host, port=args.port, time_scale=args.time_scale,
                     allow_remote=args.allow_remote)
    elif args.action == "start":
        state = daemon.start(state_dir, time_scale=args.time_scale, host=args.host, allow_remote=args.allow_remote)
        print(state["url"])
    elif args.action == "status":
        state = daemon.status(state_dir)
        if state is None:
            print("not running")
            return 1
        print(json.dumps(state, indent=2))
    elif args.action == "stop":
        print("stopped" if daemon.stop(state_dir) else "not running")
    elif args.action == "env":
        state = daemon.start(state_dir, time_scale=args.time_scale)
        # The sagemaker SDK also needs its config file (default bucket, no telemetry): see local/sdk_config.py.
        env = {**aws.local_env(state["url"]), **sdk_config.sdk_env(Path(state["state_dir"]))}
        for key, value in env.items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


def _endpoints(args) -> int:
    from . import endpoint

    if args.action == "list":
        rows = endpoint.list_managed(args.target)
        print(f"{'NAME':<63}  {'STATUS':<10} {'AGE':>8} {'INSTANCES':>9} {'BACKLOG':>7}")
        for row in rows:
            backlog = "-" if row.backlog is None else f"{row.backlog:.0f}"
            print(f"{row.name:<63}  {row.status:<10} {_age(row.age_seconds):>8} {row.instances:>9} {backlog:>7}")
        if not rows:
            print("(no endpoints made by mf-sm-async)")
    elif args.action == "teardown":
        if not args.name:
            raise ConfigError("NAME", None, "the endpoint's name: mf-sm-async endpoints teardown NAME [--delete]")
        endpoint.teardown_managed(args.name, delete=args.delete, target=args.target)
        print(f"{args.name}: {'deleted' if args.delete else 'scaled to zero'}")
    elif args.action == "logs":
        if not args.name:
            raise ConfigError("NAME", None, "the endpoint's name: mf-sm-async endpoints logs NAME")
        print(endpoint.container_logs(args.name, target=args.target, lines=args.lines))
    return 0


def _cleanup(args) -> int:
    from . import endpoint

    deleted, leased = endpoint.cleanup(_duration(args.older_than), target=args.target)
    print("deleted: " + (", ".join(deleted) if deleted else "nothing"))
    if leased:
        print("still in use (live lease), kept: " + ", ".join(leased))
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise ConfigError("--older-than", text, "a number and a unit: 30m, 2h, 1d") from None


def _read_table(path: Path):
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        try:
            return pd.read_csv(path)
        except UnicodeDecodeError as exc:
            raise ConfigError("--input", str(path), "a UTF-8 .csv file",
                              hint=f"{exc}; re-encode it, e.g. iconv -f latin1 -t utf-8") from None
    raise ConfigError("--input", str(path), "a .parquet or .csv file")


def _predict(args) -> int:
    from .endpoint import AsyncEndpoint

    if args.output.suffix not in (".parquet", ".csv"):
        raise ConfigError("--output", str(args.output), "a .parquet or .csv file")
    frame = _read_table(args.input)
    options = {k: v for k, v in (("rows_per_payload", args.rows_per_payload), ("content_type", args.content_type),
                                 ("max_in_flight", args.max_in_flight), ("run_id", args.run_id),
                                 ("method", args.method)) if v is not None}
    ep = AsyncEndpoint.attach(args.endpoint, target=args.target)
    try:
        result = ep.predict(frame, resume=args.resume, **options)
    finally:
        ep.teardown()  # an attached endpoint is kept: this releases our lease
    out = result.predictions
    out.columns = [str(c) for c in out.columns]
    out.to_parquet(args.output) if args.output.suffix == ".parquet" else out.to_csv(args.output)
    print(f"{result} -> {args.output}")
    if not result.failures.empty:
        failures = args.output.with_name(args.output.stem + ".failures.csv")
        result.failures.to_csv(failures)
        print(f"{len(result.failures)} rows failed: see {failures}")
        return 1
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(rows_per_payload=args.rows_per_payload)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mf-sm-async", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="the local SageMaker async emulator")
    local.add_argument("action", choices=["serve", "start", "status", "stop", "env"])
    local.add_argument("--state-dir", type=Path, default=None,
                       help="emulator state directory (default $MF_SM_ASYNC_HOME/local)")
    local.add_argument("--port", type=int, default=0, help="serve: port on 127.0.0.1 (default: a free one)")
    local.add_argument("--host", default="127.0.0.1",
                       help="serve / start: address to bind (default 127.0.0.1; a non-loopback one needs --allow-remote)")
    local.add_argument("--allow-remote", action="store_true",
                       help="serve / start: allow a non-loopback --host (the emulator has no authentication)")
    local.add_argument("--time-scale", type=float, default=None,
                       help="run TTLs and scaling periods this many times faster (tests)")
    local.set_defaults(func=_local)

    endpoints = commands.add_parser("endpoints", help="the endpoints mf-sm-async made")
    endpoints.add_argument("action", choices=["list", "teardown", "logs"])
    endpoints.add_argument("name", nargs="?", help="teardown / logs: the endpoint")
    endpoints.add_argument("--delete", action="store_true", help="teardown: delete instead of scaling to zero")
    endpoints.add_argument("--lines", type=int, default=50, help="logs: how many lines")
    endpoints.add_argument("--target", choices=["local", "aws"], default=None)
    endpoints.set_defaults(func=_endpoints)

    clean = commands.add_parser("cleanup", help="delete our endpoints older than a duration (orphans)")
    clean.add_argument("--older-than", required=True, help="e.g. 30m, 2h, 1d")
    clean.add_argument("--target", choices=["local", "aws"], default=None)
    clean.set_defaults(func=_cleanup)

    score = commands.add_parser("predict", help="score a .parquet/.csv table through an endpoint")
    score.add_argument("--endpoint", required=True, help="the endpoint's name")
    score.add_argument("--input", required=True, type=Path, help="rows to score: .parquet or .csv")
    score.add_argument("--output", required=True, type=Path, help="predictions: .parquet or .csv")
    score.add_argument("--rows-per-payload", type=int, default=None)
    score.add_argument("--content-type", default=None)
    score.add_argument("--max-in-flight", type=int, default=None)
    score.add_argument("--method", default=None, help="the estimator method, e.g. predict_proba")
    score.add_argument("--run-id", default=None, help="name the run (needed for --resume)")
    score.add_argument("--resume", action="store_true", help="re-use the finished parts of run --run-id")
    score.add_argument("--target", choices=["local", "aws"], default=None)
    score.set_defaults(func=_predict)

    demo = commands.add_parser("demo", help="train a scikit-learn model, score it on the emulator, tear down")
    demo.add_argument("--rows-per-payload", type=int, default=50)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "time_scale", None) is None and args.command == "local" and args.action == "serve":
        args.time_scale = 1.0
    try:
        return args.func(args)
    except AsyncInferenceError as error:
        print(f"mf-sm-async: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
