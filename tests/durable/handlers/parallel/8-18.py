"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-18: the failure tolerance is exceeded before three successes could be had.
@durable_execution
def handler(event, context: DurableContext):
    branches = [fail, fail, lambda c: "c", lambda c: "d"]
    r = context.parallel(branches, config=parallel_sequential(min_successful=3, tolerated_failure_count=1))
    return projection(r, "completionReason", "successCount", "failureCount", "totalCount")
