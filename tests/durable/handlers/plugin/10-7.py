"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision
from conformance_helpers import ConfPluginFactory

# 10-7: a step that always fails, not retried: the plugin sees the execution fail.
@durable_execution(plugins=[ConfPluginFactory()])
def handler(event, context: DurableContext):
    def failing(_: StepContext):
        raise RuntimeError("this step always fails")

    return context.step(failing, config=StepConfig(retry_strategy=lambda e, n: RetryDecision.no_retry()))
