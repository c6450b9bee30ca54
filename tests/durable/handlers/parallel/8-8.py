"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-8: two successes are enough.
@durable_execution
def handler(event, context: DurableContext):
    r = context.parallel([lambda c: "a", lambda c: "b", lambda c: "c", lambda c: "d"], config=parallel_sequential(min_successful=2))
    return projection(r, "completionReason", "successCount", "totalCount")
