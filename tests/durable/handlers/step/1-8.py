"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-8: a step, then a wait; the replay skips the step.
@durable_execution
def handler(event, context: DurableContext):
    value = context.step(lambda _: "computed", name="compute")
    context.wait(Duration.from_seconds(2))
    return value
