"""What AWS does every minute behind an asynchronous endpoint, done every (emulated) minute here:

1. publish the endpoint's metrics to CloudWatch (namespace ``AWS/SageMaker``, dimension EndpointName):
   ApproximateBacklogSize, ApproximateBacklogSizePerInstance, ApproximateAgeOfOldestRequest,
   HasBacklogWithoutCapacity, InvocationsProcessed, InvocationFailures, ExpiredRequests;
2. evaluate the CloudWatch alarms on those metrics and run their actions: a step-scaling policy of
   Application Auto Scaling named in AlarmActions changes the variant's desired instance count;
3. run target-tracking policies on ApproximateBacklogSizePerInstance (scale out after 3 breaching
   datapoints, in after 15 below 90% of the target, as AWS's generated alarms do).

Target tracking computes ``ceil(current * metric / target)``, so at zero instances it never leaves zero:
only the step policy on HasBacklogWithoutCapacity does, exactly as on AWS. Cool-downs, periods and
datapoints are emulated seconds (see :class:`Clock`). moto stores the targets, policies and alarms;
nothing in moto acts on them, this module does.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import threading

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.cloudwatch.models import cloudwatch_backends

log = logging.getLogger(__name__)

NAMESPACE = "AWS/SageMaker"
PERIOD = 60.0                      # emulated seconds per datapoint
TICKS_PER_PERIOD = 6
OUT_DATAPOINTS, IN_DATAPOINTS, IN_FRACTION = 3, 15, 0.9
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _resource_id(name: str, variant: str) -> str:
    return f"endpoint/{name}/variant/{variant}"


class EndpointSeries:
    """One endpoint's datapoints, one per emulated minute, newest last."""

    def __init__(self, keep: int = 64):
        self.points: collections.deque[dict] = collections.deque(maxlen=keep)
        self._last_counts = (0, 0, 0)

    def add(self, runtime) -> dict:
        counters = runtime.counters
        counts = (counters.processed, counters.failed, counters.expired)
        processed, failed, expired = (now - before for now, before in zip(counts, self._last_counts))
        self._last_counts = counts
        current, backlog = runtime.current_instances, runtime.backlog
        point = {
            "ApproximateBacklogSize": backlog,
            # undefined without instances: no datapoint, so target tracking cannot act at zero
            "ApproximateBacklogSizePerInstance": backlog / current if current else None,
            "ApproximateAgeOfOldestRequest": runtime.oldest_age(),
            "HasBacklogWithoutCapacity": 1.0 if backlog and not current else 0.0,
            "InvocationsProcessed": processed,
            "InvocationFailures": failed,
            "ExpiredRequests": expired,
        }
        self.points.append(point)
        return point

    def last(self, metric: str, count: int) -> list[float]:
        return [p[metric] for p in list(self.points)[-count:]]


class Autoscaler:
    def __init__(self, control, clock, account_id: str, minute_hooks=()):
        self.control = control
        self._minute_hooks = list(minute_hooks)  # callables(runtimes), e.g. the lease keeper
        self.clock = clock
        self.account_id = account_id
        self.series: dict[tuple[str, str], EndpointSeries] = {}
        self._last_action: dict[str, float] = {}   # policy arn -> clock.now() of its last scaling
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="autoscaler")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        tick = 0
        while not self._stop.wait(self.clock.emulated(PERIOD) / TICKS_PER_PERIOD):
            tick += 1
            try:
                for runtime in list(self.control.runtimes.values()):
                    runtime.check_health()
                if tick % TICKS_PER_PERIOD == 0:
                    self.minute()
            except Exception:  # the scaler must outlive any one bad policy or alarm
                log.exception("autoscaler tick failed")

    # one emulated minute ---------------------------------------------------------------------
    def minute(self) -> None:
        runtimes = dict(self.control.runtimes)
        for key in list(self.series):
            if key not in runtimes:
                del self.series[key]
        for (region, name), runtime in runtimes.items():
            point = self.series.setdefault((region, name), EndpointSeries()).add(runtime)
            self._publish(region, name, runtime.settings.variant_name, point)
        for (region, name), runtime in runtimes.items():
            if runtime.failed or not runtime.settings.async_config:
                continue
            self._evaluate_alarms(region, name, runtime)
            self._target_tracking(region, name, runtime)
        for hook in self._minute_hooks:
            hook(runtimes)

    def _publish(self, region: str, name: str, variant: str, point: dict) -> None:
        data = [{"MetricName": metric, "Value": float(value),  # moto stamps it "now", as AWS does
                 "Dimensions": [{"Name": "EndpointName", "Value": name}]}
                for metric, value in point.items() if value is not None]
        cloudwatch_backends[self.account_id][region].put_metric_data(NAMESPACE, data)

    def _target(self, region: str, name: str, variant: str):
        targets = applicationautoscaling_backends[self.account_id][region].targets.get(DIMENSION, {})
        return targets.get(_resource_id(name, variant))

    def _policies(self, region: str, name: str, variant: str):
        backend = applicationautoscaling_backends[self.account_id][region]
        resource = _resource_id(name, variant)
        return [p for p in backend.policies.values()
                if p.service_namespace == "sagemaker" and p.resource_id == resource]

    def _scale(self, runtime, target, desired: int, why: str) -> None:
        low = int(target.min_capacity if target.min_capacity is not None else 0)
        high = int(target.max_capacity if target.max_capacity is not None else desired)
        desired = max(low, min(high, desired))
        if desired != runtime.desired:
            log.info("%s: %d -> %d instances (%s)", runtime.settings.endpoint_name, runtime.desired, desired, why)
            runtime.set_desired(desired)

    def _cooling(self, arn: str, cooldown: float) -> bool:
        last = self._last_action.get(arn)
        return last is not None and self.clock.now() - last < self.clock.emulated(cooldown)

    # alarms -> step scaling ----------------------------------------------------------------------
    def _evaluate_alarms(self, region: str, name: str, runtime) -> None:
        series = self.series[(region, name)]
        # Keyed by the ARN without its random id: a daemon restarted on the same state directory replays
        # PutScalingPolicy (a new id) and PutMetricAlarm (the actions still name the old one).
        policies = {_stable(p.policy_arn): p for p in self._policies(region, name, runtime.settings.variant_name)}
        for alarm in list(cloudwatch_backends[self.account_id][region].alarms.values()):
            if alarm.namespace != NAMESPACE or not any(
                    d.name == "EndpointName" and d.value == name for d in alarm.dimensions):
                continue
            periods = max(1, int(alarm.evaluation_periods or 1))
            values = series.last(alarm.metric_name, periods) if alarm.metric_name in series.points[-1] else []
            needed = int(alarm.datapoints_to_alarm or periods)
            breaching = [v for v in values if v is not None and _breaches(v, alarm.comparison_operator, alarm.threshold)]
            state = "ALARM" if len(breaching) >= needed else "OK"
            if state != alarm.state_value:
                alarm.update_state(f"Threshold Crossed: {len(breaching)} of the last {len(values)} datapoints "
                                   f"{'were' if state == 'ALARM' else 'were not'} breaching the threshold",
                                   "{}", state)
            if state == "ALARM" and alarm.actions_enabled:
                # Application Auto Scaling actions run again every period while the alarm stays in ALARM.
                for action in alarm.alarm_actions or []:
                    policy = policies.get(_stable(action.split(":createdBy/")[0]))
                    if policy is not None and policy.step_scaling_policy_configuration:
                        self._step(runtime, policy, breaching[-1] - float(alarm.threshold), region, name)

    def _step(self, runtime, policy, delta: float, region: str, name: str) -> None:
        config = policy.step_scaling_policy_configuration
        target = self._target(region, name, runtime.settings.variant_name)
        if target is None or self._cooling(policy.policy_arn, float(config.get("Cooldown", 0))):
            return
        for step in config.get("StepAdjustments", []):
            lower = step.get("MetricIntervalLowerBound")
            upper = step.get("MetricIntervalUpperBound")
            if (lower is None or delta >= float(lower)) and (upper is None or delta < float(upper)):
                adjustment = int(step["ScalingAdjustment"])
                break
        else:
            return
        kind = config.get("AdjustmentType", "ChangeInCapacity")
        current = runtime.desired
        if kind == "ExactCapacity":
            desired = adjustment
        elif kind == "PercentChangeInCapacity":
            change = current * adjustment / 100
            desired = current + (math.ceil(change) if change > 0 else math.floor(change))
        else:
            desired = current + adjustment
        self._last_action[policy.policy_arn] = self.clock.now()
        self._scale(runtime, target, desired, f"step policy {policy.policy_name}")

    # target tracking -----------------------------------------------------------------------------
    def _target_tracking(self, region: str, name: str, runtime) -> None:
        series = self.series[(region, name)]
        for policy in self._policies(region, name, runtime.settings.variant_name):
            config = policy.target_tracking_scaling_policy_configuration
            if not config:
                continue
            metric = (config.get("CustomizedMetricSpecification") or {}).get("MetricName")
            if metric not in series.points[-1]:
                continue
            target_value = float(config["TargetValue"])
            target = self._target(region, name, runtime.settings.variant_name)
            current = runtime.current_instances
            if target is None or current == 0 or runtime.desired != current:
                continue  # at zero there is nothing to multiply; mid-scaling wait for the fleet
            recent = series.last(metric, IN_DATAPOINTS)
            if None in recent:
                recent = recent[len(recent) - recent[::-1].index(None):]  # only datapoints since the last gap
            if len(recent) >= OUT_DATAPOINTS and all(v > target_value for v in recent[-OUT_DATAPOINTS:]):
                if not self._cooling(policy.policy_arn + "/out", float(config.get("ScaleOutCooldown", 300))):
                    desired = math.ceil(current * recent[-1] / target_value)
                    self._last_action[policy.policy_arn + "/out"] = self.clock.now()
                    self._scale(runtime, target, desired, f"target tracking {policy.policy_name} out")
            elif (not config.get("DisableScaleIn") and len(recent) >= IN_DATAPOINTS
                  and all(v < target_value * IN_FRACTION for v in recent)):
                if not self._cooling(policy.policy_arn + "/in", float(config.get("ScaleInCooldown", 300))):
                    desired = math.ceil(current * recent[-1] / target_value)
                    self._last_action[policy.policy_arn + "/in"] = self.clock.now()
                    self._scale(runtime, target, desired, f"target tracking {policy.policy_name} in")


def _stable(policy_arn: str) -> str:
    """``arn:...:scalingPolicy:<id>:resource/...:policyName/<name>`` without ``<id>``."""
    return re.sub(r":scalingPolicy:[^:]+:", ":scalingPolicy::", policy_arn)


def _breaches(value: float, operator: str, threshold) -> bool:
    threshold = float(threshold)
    return {
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "GreaterThanThreshold": value > threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }.get(operator, False)
