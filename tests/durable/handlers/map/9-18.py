"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-18: a wait after a map with a tolerated failure.
@durable_execution
def handler(event, context: DurableContext):
    r = context.map(["a", "b"], fail_on(1), config=map_sequential(tolerated_failure_count=1))
    context.wait(Duration.from_seconds(1))
    return projection(r, "completionReason", "status", "successCount", "failureCount", "totalCount")
