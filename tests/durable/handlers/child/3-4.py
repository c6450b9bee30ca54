"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-4: the step inside fails; the child context and the execution fail.
@durable_execution
def handler(event, context: DurableContext):
    def failing(_: StepContext):
        raise RuntimeError("the inner step fails")

    no_retry = StepConfig(retry_strategy=RetryPresets.none())
    return context.run_in_child_context(lambda child: child.step(failing, name="failing", config=no_retry), name="child")
