"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-3: the second step uses the first one's result.
@durable_execution
def handler(event, context: DurableContext):
    first = context.step(lambda _: "first", name="step_one")
    return context.step(lambda _: f"{first}_second", name="step_two")
