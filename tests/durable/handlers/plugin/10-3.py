"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision
from conformance_helpers import ConfPluginFactory

# 10-3: the plugin's attempt hooks around a step that fails once and is retried.
@durable_execution(plugins=[ConfPluginFactory()])
def handler(event, context: DurableContext):
    def unreliable(step: StepContext):
        if step.attempt == 1:
            raise RuntimeError("the first attempt fails")
        return "Operation succeeded"

    def retry(error, attempts):
        return RetryDecision.retry(Duration.from_seconds(1)) if attempts < 3 else RetryDecision.no_retry()

    return context.step(unreliable, config=StepConfig(retry_strategy=retry))
