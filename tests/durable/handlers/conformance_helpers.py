"""What several conformance handlers share; shipped next to each handler as `conformance_helpers.py`."""

import json

from aws_durable_execution_sdk_python.concurrency.models import BatchItem, BatchItemStatus, BatchResult, CompletionReason
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, ParallelConfig
from aws_durable_execution_sdk_python.plugin import DurableInstrumentationPlugin, OperationType
from aws_durable_execution_sdk_python.serdes import SerDes
from aws_durable_execution_sdk_python.waits import WaitForConditionDecision

# The chained-invoke requirements' targets (tests/durable/targets/).
ECHO = "ct-target-echo"
FAIL = "ct-target-fail"

# Map and parallel run one item (branch) at a time where a requirement's history depends on the order.
MAP_ONE_AT_A_TIME = MapConfig(max_concurrency=1)
PARALLEL_ONE_AT_A_TIME = ParallelConfig(max_concurrency=1)


def map_sequential(**completion):
    return MapConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def parallel_sequential(**completion):
    return ParallelConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def fail_on(*indexes):
    """A map function whose items at `indexes` fail."""

    def run(ctx, item, index, items):
        if index in indexes:
            raise RuntimeError(f"item {index} fails")
        return "ok"

    return run


def fail(_):
    """A parallel branch that fails."""
    raise RuntimeError("this branch fails")


def projection(r, *fields):
    """The batch result's figures a requirement names."""
    every = {
        "completionReason": r.completion_reason.value,
        "status": r.status.value,
        "successCount": r.success_count,
        "failureCount": r.failure_count,
        "totalCount": r.total_count,
    }
    return {k: every[k] for k in fields}


def submit(callback_id, _):
    """A wait_for_callback submitter that hands the id to no one: the test's external system finds it in the history."""


def until(threshold, seconds=1):
    """A wait_for_condition strategy: poll again a fixed time later while the state is below the threshold."""

    def strategy(state, attempts):
        if state >= threshold:
            return WaitForConditionDecision.stop_polling()
        return WaitForConditionDecision.continue_waiting(Duration.from_seconds(seconds))

    return strategy


class OpSerDes(SerDes):
    """A map's whole result as "OPSERDE:" and its results joined by commas (9-19, 9-20)."""

    def serialize(self, value, _):
        return "OPSERDE:" + ",".join(value.get_results())

    def deserialize(self, data, _):
        results = data.removeprefix("OPSERDE:").split(",")
        items = [BatchItem(i, BatchItemStatus.SUCCEEDED, r) for i, r in enumerate(results)]
        return BatchResult(items, CompletionReason.ALL_COMPLETED)


class ConfPluginFactory:
    """The plugin requirements' instrumentation plugin (10-x): each hook logs a JSON line to stdout — `plugin`,
    `hook`, what the hook knows (`first`, `status`, `op`, `n`, `outcome`) and the execution's ARN (for
    CloudWatch's execution-scoped retrieval); operation and attempt hooks for steps only. `faulty`: every hook
    raises after logging."""

    def __init__(self, name="CONFPLUGIN", faulty=False):
        self.name, self.faulty = name, faulty

    def create_plugin(self, info):
        return _ConfPlugin(self.name, self.faulty, info.execution_arn)


class _ConfPlugin(DurableInstrumentationPlugin):
    def __init__(self, name, faulty, arn):
        self.name, self.faulty, self.arn = name, faulty, arn

    def _emit(self, hook, **fields):
        print(json.dumps({"plugin": self.name, "hook": hook, **fields, "durableExecutionArn": self.arn}), flush=True)
        if self.faulty:
            raise RuntimeError(f"{self.name} fails in {hook}")

    @staticmethod
    def _step(info):
        return info.operation_type == OperationType.STEP

    def on_invocation_start(self, info):
        self._emit("invocation-start", first=info.is_first_invocation)

    def on_invocation_end(self, info):
        self._emit("invocation-end", status=info.status.value)

    def on_operation_start(self, info):
        if self._step(info):
            self._emit("operation-start", op=info.operation_id)

    def on_operation_end(self, info):
        if self._step(info):
            self._emit("operation-end", op=info.operation_id, status=info.status.value)

    def on_user_function_start(self, info):
        if self._step(info):
            self._emit("attempt-start", n=info.attempt, op=info.operation_id)

    def on_user_function_end(self, info):
        if self._step(info):
            self._emit("attempt-end", n=info.attempt, outcome=info.outcome.value, op=info.operation_id)
