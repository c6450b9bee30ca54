"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-9: a second failure exceeds the tolerance.
@durable_execution
def handler(event, context: DurableContext):
    r = context.map(["a", "b", "c"], fail_on(0, 1), config=map_sequential(tolerated_failure_count=1))
    return projection(r, "completionReason", "successCount", "failureCount", "totalCount")
