"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-7: the step in a child context fails once, then succeeds.
def retry_once(error, attempts):
    return RetryDecision.retry(Duration.from_seconds(1)) if attempts < 2 else RetryDecision.no_retry()


@durable_execution
def handler(event, context: DurableContext):
    def flaky(step: StepContext):
        if step.attempt == 1:
            raise RuntimeError("first attempt fails")
        return event

    config = StepConfig(retry_strategy=retry_once)
    return context.run_in_child_context(lambda child: child.step(flaky, name="flaky", config=config), name="child")
