"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-11: two at a time; results in branch order.
@durable_execution
def handler(event, context: DurableContext):
    branches = [lambda c: "r0", lambda c: "r1", lambda c: "r2"]
    return context.parallel(branches, config=ParallelConfig(max_concurrency=2)).get_results()
