"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-2: no name; the branches return at once.
@durable_execution
def handler(event, context: DurableContext):
    return context.parallel([lambda c: "alpha", lambda c: "beta"], config=PARALLEL_ONE_AT_A_TIME).get_results()
