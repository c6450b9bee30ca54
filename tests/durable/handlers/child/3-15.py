"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-15: the child context raises without any durable operation.
@durable_execution
def handler(event, context: DurableContext):
    def body(child: DurableContext):
        raise RuntimeError("the child fails by itself")

    return context.run_in_child_context(body, name="child")
