"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-21: a parallel inside a parallel.
def inner(c):
    branches = [lambda d: d.step(lambda _: "i1", name="i1"), lambda d: d.step(lambda _: "i2", name="i2")]
    return c.parallel(branches, config=PARALLEL_ONE_AT_A_TIME).get_results()


@durable_execution
def handler(event, context: DurableContext):
    return context.parallel([inner], config=PARALLEL_ONE_AT_A_TIME).get_results()
