"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, NestingType, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

from conformance_helpers import PARALLEL_ONE_AT_A_TIME, fail, parallel_sequential, projection


# 8-1: two branches, a step each.
@durable_execution
def handler(event, context: DurableContext):
    branches = [lambda c: c.step(lambda _: "task-1", name="task-1"), lambda c: c.step(lambda _: "task-2", name="task-2")]
    return context.parallel(branches, name="parallel", config=PARALLEL_ONE_AT_A_TIME).get_results()
