"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-1: one step that greets its input.
@durable_execution
def handler(event, context: DurableContext):
    return context.step(lambda _: f"Hello, {event}!")
