"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-9: a child context, then a wait; the replay returns the child's result without running it.
@durable_execution
def handler(event, context: DurableContext):
    result = context.run_in_child_context(lambda child: child.step(lambda _: event, name="echo"))
    context.wait(Duration.from_seconds(2))
    return result
