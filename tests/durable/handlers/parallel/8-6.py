"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-6: fail-fast: the second branch fails, the third never starts.
@durable_execution
def handler(event, context: DurableContext):
    r = context.parallel([lambda c: "ok", fail, lambda c: "never"], config=parallel_sequential(tolerated_failure_count=0))
    return projection(r, "completionReason", "status", "successCount", "failureCount", "totalCount")
