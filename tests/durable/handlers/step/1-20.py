"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-20: the failure is caught and a second step gives the fallback.
@durable_execution
def handler(event, context: DurableContext):
    def failing(_: StepContext):
        raise RuntimeError("this step fails")

    try:
        context.step(failing, name="failing", config=StepConfig(retry_strategy=RetryPresets.none()))
    except Exception:
        pass
    return context.step(lambda _: "fallback_result", name="fallback")
