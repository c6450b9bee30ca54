"""What several conformance handlers share; shipped next to each handler as `conformance_helpers.py`."""

from aws_durable_execution_sdk_python.concurrency.models import BatchItem, BatchItemStatus, BatchResult, CompletionReason
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, ParallelConfig
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
