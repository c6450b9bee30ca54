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

# 9-14: each iteration's result through a serdes of its own.
from aws_durable_execution_sdk_python.serdes import SerDes


class Encoded(SerDes):
    def serialize(self, value, _):
        return "wrapped:" + value

    def deserialize(self, data, _):
        return data.removeprefix("wrapped:")


@durable_execution
def handler(event, context: DurableContext):
    config = MapConfig(max_concurrency=1, item_serdes=Encoded())
    return context.map(["x", "y"], lambda ctx, item, index, items: item.upper(), config=config).get_results()
