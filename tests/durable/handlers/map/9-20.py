"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

ONE_AT_A_TIME = MapConfig(max_concurrency=1)


def sequential(**completion):
    return MapConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def fail_on(*indexes):
    def run(ctx, item, index, items):
        if index in indexes:
            raise RuntimeError(f"item {index} fails")
        return "ok"

    return run


def projection(r, *fields):
    every = {
        "completionReason": r.completion_reason.value,
        "status": r.status.value,
        "successCount": r.success_count,
        "failureCount": r.failure_count,
        "totalCount": r.total_count,
    }
    return {k: every[k] for k in fields}

from aws_durable_execution_sdk_python.concurrency.models import BatchItem, BatchItemStatus, BatchResult, CompletionReason
from aws_durable_execution_sdk_python.serdes import JsonSerDes, SerDes


class OpSerDes(SerDes):
    """The whole map result as "OPSERDE:" and its results joined by commas."""

    def serialize(self, value, _):
        return "OPSERDE:" + ",".join(value.get_results())

    def deserialize(self, data, _):
        results = data.removeprefix("OPSERDE:").split(",")
        items = [BatchItem(i, BatchItemStatus.SUCCEEDED, r) for i, r in enumerate(results)]
        return BatchResult(items, CompletionReason.ALL_COMPLETED)


# 9-20: the same, read back through it after a wait.
@durable_execution
def handler(event, context: DurableContext):
    config = MapConfig(max_concurrency=1, serdes=OpSerDes(), item_serdes=JsonSerDes())
    r = context.map(["x", "y"], lambda ctx, item, index, items: item.upper(), config=config)
    context.wait(Duration.from_seconds(1))
    return r.get_results()
