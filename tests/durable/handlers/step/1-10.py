"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-10: a failed step is caught; the replay raises the same error without running the step.
@durable_execution
def handler(event, context: DurableContext):
    def run(_: StepContext):
        print("step executed")
        raise ValueError("permanent failure")

    try:
        context.step(run, name="fails", config=StepConfig(retry_strategy=RetryPresets.none()))
    except Exception:
        pass
    context.wait(Duration.from_seconds(1))
