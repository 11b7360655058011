"""The ``mf-sm-async`` command: parses arguments and calls the package; no logic of its own.

    mf-sm-async local serve|start|status|stop|env
    mf-sm-async demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import AsyncInferenceError


def _local(args) -> int:
    from . import aws
    from .local import daemon

    state_dir = args.state_dir
    if args.action == "serve":
        daemon.serve(state_dir, port=args.port, time_scale=args.time_scale)
    elif args.action == "start":
        state = daemon.start(state_dir, time_scale=args.time_scale)
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
        for key, value in aws.local_env(state["url"]).items():
            print(f"export {key}={value}")
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
    local.add_argument("--time-scale", type=float, default=None,
                       help="run TTLs and scaling periods this many times faster (tests)")
    local.set_defaults(func=_local)

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
