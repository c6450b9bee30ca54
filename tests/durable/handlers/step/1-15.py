"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-15: the strategy retries a TransientError.
class TransientError(Exception):
    pass


def retry_on_transient(error, attempts):
    if "TransientError" in str(getattr(error, "error_type", "")) or isinstance(error, TransientError):
        return RetryDecision.retry(Duration.from_seconds(1))
    return RetryDecision.no_retry()


@durable_execution
def handler(event, context: DurableContext):
    def run(step: StepContext):
        if step.attempt == 1:
            raise TransientError("try again")
        return "recovered"

    return context.step(run, name="transient", config=StepConfig(retry_strategy=retry_on_transient))
