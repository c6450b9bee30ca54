"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-12: FLAT nesting: the branches' steps sit directly under the parallel.
@durable_execution
def handler(event, context: DurableContext):
    branches = [lambda c: c.step(lambda _: "fa", name="fa"), lambda c: c.step(lambda _: "fb", name="fb")]
    config = ParallelConfig(max_concurrency=1, nesting_type=NestingType.FLAT)
    return context.parallel(branches, config=config).get_results()
