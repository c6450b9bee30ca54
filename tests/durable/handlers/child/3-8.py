"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-8: the step in a child context fails twice (two attempts); the child context fails.
def two_attempts(error, attempts):
    return RetryDecision.retry(Duration.from_seconds(1)) if attempts < 2 else RetryDecision.no_retry()


@durable_execution
def handler(event, context: DurableContext):
    def always_fail(_: StepContext):
        raise RuntimeError("always fails")

    config = StepConfig(retry_strategy=two_attempts)
    return context.run_in_child_context(lambda child: child.step(always_fail, name="always_fail", config=config), name="child")
