"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-4: a step returns a nested object.
@durable_execution
def handler(event, context: DurableContext):
    return context.step(
        lambda _: {"user": {"name": event["name"], "tags": event["tags"]}, "count": len(event["tags"])},
        name="build_response",
    )
