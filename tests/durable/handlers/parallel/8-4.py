"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-4: a string, a number and an object.
@durable_execution
def handler(event, context: DurableContext):
    return context.parallel([lambda c: "hello", lambda c: 42, lambda c: {"k": "v"}], config=PARALLEL_ONE_AT_A_TIME).get_results()
