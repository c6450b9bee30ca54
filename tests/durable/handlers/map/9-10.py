"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-10: 25 % of four tolerated; the second failure exceeds it.
@durable_execution
def handler(event, context: DurableContext):
    r = context.map(["a", "b", "c", "d"], fail_on(0, 1), config=map_sequential(tolerated_failure_percentage=25))
    return projection(r, "completionReason", "successCount", "failureCount", "totalCount")
