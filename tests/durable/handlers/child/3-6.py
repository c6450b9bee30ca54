"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-6: a child context inside a child context, a step in each.
@durable_execution
def handler(event, context: DurableContext):
    def inner(child: DurableContext):
        return child.step(lambda _: event, name="inner_step")

    def outer(child: DurableContext):
        child.step(lambda _: event, name="outer_step")
        return child.run_in_child_context(inner, name="inner")

    return context.run_in_child_context(outer, name="outer")
