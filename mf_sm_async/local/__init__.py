"""The local emulator: moto for the AWS control planes plus a real asynchronous inference runtime.

Start it with ``mf-sm-async local start``; see :mod:`mf_sm_async.local.daemon`.
"""
