"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-5: the child context's failure is caught; a recovery step follows.
@durable_execution
def handler(event, context: DurableContext):
    def failing(_: StepContext):
        raise RuntimeError("the inner step fails")

    no_retry = StepConfig(retry_strategy=RetryPresets.none())
    try:
        context.run_in_child_context(lambda child: child.step(failing, name="failing", config=no_retry))
    except Exception:
        pass
    return context.step(lambda _: event, name="recover")
