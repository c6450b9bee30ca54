"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-10: a step and a wait in a child context.
@durable_execution
def handler(event, context: DurableContext):
    def body(child: DurableContext):
        value = child.step(lambda _: event, name="echo")
        child.wait(Duration.from_seconds(2))
        return value

    return context.run_in_child_context(body, name="child")
