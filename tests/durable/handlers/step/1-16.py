"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-16: the strategy does not retry a TransientError.
class TransientError(Exception):
    pass


def no_retry_on_transient_error(error, attempts):
    return RetryDecision.no_retry()


@durable_execution
def handler(event, context: DurableContext):
    def run(_: StepContext):
        raise TransientError("not retried")

    return context.step(run, name="transient", config=StepConfig(retry_strategy=no_retry_on_transient_error))
