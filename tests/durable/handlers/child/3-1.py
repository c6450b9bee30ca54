"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-1: a child context with one step.
@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(lambda child: child.step(lambda _: event, name="echo"))
