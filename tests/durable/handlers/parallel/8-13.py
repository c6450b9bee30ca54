"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-13: 25 % of four tolerated; the second failure (50 %) exceeds it.
@durable_execution
def handler(event, context: DurableContext):
    r = context.parallel([fail, fail, lambda c: "c", lambda c: "d"], config=parallel_sequential(tolerated_failure_percentage=25))
    return projection(r, "completionReason", "successCount", "failureCount", "totalCount")
