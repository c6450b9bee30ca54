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

# 9-13: iterations named by their item.
@durable_execution
def handler(event, context: DurableContext):
    config = MapConfig(max_concurrency=1, item_namer=lambda item, index: f"item-{item}")
    return context.map(event, lambda ctx, item, index, items: item * 10, config=config).get_results()
