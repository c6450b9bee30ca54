"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-3: two steps in a child context, the second given the first's result.
@durable_execution
def handler(event, context: DurableContext):
    def body(child: DurableContext):
        first = child.step(lambda _: event, name="first")
        return child.step(lambda _: first, name="second")

    return context.run_in_child_context(body, name="child")
