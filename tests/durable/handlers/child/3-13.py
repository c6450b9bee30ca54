"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-13: only a wait in a child context, then a step outside it.
@durable_execution
def handler(event, context: DurableContext):
    def body(child: DurableContext):
        child.wait(Duration.from_seconds(2))
        return event

    context.run_in_child_context(body, name="child")
    return context.step(lambda _: event, name="after")
