"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-14: the second branch waits; on resume the first is not run again.
def second(c):
    c.wait(Duration.from_seconds(2))
    return "b1"


@durable_execution
def handler(event, context: DurableContext):
    branches = [lambda c: c.step(lambda _: "b0", name="b0"), second]
    return context.parallel(branches, config=PARALLEL_ONE_AT_A_TIME).get_results()
