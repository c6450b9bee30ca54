"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-16: results too large to checkpoint whole (about 70 KB each).
@durable_execution
def handler(event, context: DurableContext):
    r = context.map(["a", "b", "c", "d"], lambda ctx, item, index, items: item * 70_000, config=MAP_ONE_AT_A_TIME)
    return {"successCount": r.success_count, "totalCount": r.total_count}
