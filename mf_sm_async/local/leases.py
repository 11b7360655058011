"""The emulator honours AsyncEndpoint's leases (:mod:`mf_sm_async.lease`): when every holder of an
endpoint has let its lease expire (a task SIGKILLed before it could tear down), the endpoint is scaled
to zero and its wake-up alarm switched off, as the holders' own teardown would have done. On AWS the
next run or ``mf-sm-async cleanup`` does the same."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from moto.cloudwatch.models import cloudwatch_backends

from ..lease import LEASE_FOLDER

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, objects_dir: Path, account_id: str, clock=time.time):
        self.objects_dir = Path(objects_dir)
        self.account_id = account_id
        self._clock = clock

    def _lease_files(self, runtime) -> list[Path]:
        output = runtime.settings.output_path[5:]  # bucket/<prefix>/outputs, as AsyncEndpoint lays it out
        if not output.endswith("/outputs"):
            return []
        return list((self.objects_dir / output[: -len("/outputs")] / LEASE_FOLDER).glob("*.json"))

    def check(self, runtimes: dict) -> None:
        now = self._clock()
        for (region, name), runtime in runtimes.items():
            if not runtime.settings.async_config or runtime.desired == 0:
                continue
            files = self._lease_files(runtime)
            if not files:
                continue  # nobody ever leased it: not ours to decide
            expiries = []
            for path in files:
                try:
                    expiries.append(json.loads(path.read_text()).get("expires_at", 0))
                except (OSError, ValueError):
                    continue  # being rewritten or deleted right now: look again next minute
            if expiries and max(expiries) < now:
                log.warning("%s: every lease expired (its holders died): scaling to zero", name)
                for alarm in cloudwatch_backends[self.account_id][region].alarms.values():
                    if any(d.name == "EndpointName" and d.value == name for d in alarm.dimensions):
                        alarm.actions_enabled = False
                runtime.set_desired(0)
