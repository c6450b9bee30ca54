"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-9: the replay returns the step's checkpointed result without running it.
@durable_execution
def handler(event, context: DurableContext):
    def run(_: StepContext):
        print("step executed")
        return "cached_value"

    value = context.step(run, name="cache")
    context.wait(Duration.from_seconds(1))
    return value
