"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-11: the first attempt fails, the retry (a second later) succeeds.
def retry_once(error, attempts):
    return RetryDecision.retry(Duration.from_seconds(1)) if attempts < 2 else RetryDecision.no_retry()


@durable_execution
def handler(event, context: DurableContext):
    def unreliable(step: StepContext):
        if step.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "Operation succeeded"

    return context.step(unreliable, name="unreliable", config=StepConfig(retry_strategy=retry_once))
