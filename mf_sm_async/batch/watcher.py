"""The endpoint's instances while a run goes on: for progress, for the metrics (instance-seconds are
what AWS bills), and to wake an endpoint scaled to zero at the start of a run instead of waiting for
its HasBacklogWithoutCapacity alarm (minutes on AWS)."""

from __future__ import annotations

import logging
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)


class InstanceWatcher:
    def __init__(self, endpoint, every: float | None = None, clock=time.monotonic):
        self.ep, self.clock = endpoint, clock
        # made once: a client asked for later would start a new local emulator if the run's one has stopped
        self.sagemaker = endpoint._client("sagemaker")
        self.every = every or (1.0 if endpoint.target == "local" else 10.0)
        self.instances: int | None = None
        self.max_instances = 0
        self.instance_seconds = 0.0
        self._since = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mf-sm-async-instances", daemon=True)

    def start(self) -> "InstanceWatcher":
        self._look()
        self._thread.start()
        return self

    def stop(self, look: bool = True) -> None:
        """Stop watching, with a last look at the instances unless the target is gone (``look=False``)."""
        self._stop.set()
        if look:
            self._thread.join(timeout=30)
            self._look()

    def wake(self) -> None:
        """Ask for one instance now if the endpoint has none and none are coming."""
        try:
            variant = self._variant()
            if variant.get("DesiredInstanceCount", 0) == 0 and variant.get("CurrentInstanceCount", 0) == 0:
                self.ep._scaling(enable=True)
                self.sagemaker.update_endpoint_weights_and_capacities(
                    EndpointName=self.ep.name,
                    DesiredWeightsAndCapacities=[{"VariantName": variant["VariantName"], "DesiredInstanceCount": 1}])
                log.info("woke endpoint %s from zero instances", self.ep.name)
        except (ClientError, BotoCoreError) as error:  # e.g. Updating: its alarm wakes it instead
            log.info("could not wake %s directly (%s); its alarm will", self.ep.name, error)

    def _variant(self) -> dict:
        described = self.sagemaker.describe_endpoint(EndpointName=self.ep.name)
        return (described.get("ProductionVariants") or [{}])[0]

    def _look(self) -> None:
        try:
            current = int(self._variant().get("CurrentInstanceCount", 0))
        except (ClientError, BotoCoreError, KeyError):
            return
        now = self.clock()
        if self._since is not None and self.instances is not None:
            self.instance_seconds += self.instances * (now - self._since)
        self._since, self.instances = now, current
        self.max_instances = max(self.max_instances, current)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._look()
