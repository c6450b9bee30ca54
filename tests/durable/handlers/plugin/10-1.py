"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from conformance_helpers import ConfPluginFactory

# 10-1: the plugin's invocation hooks around one step, which logs through its logger.
@durable_execution(plugins=[ConfPluginFactory()])
def handler(event, context: DurableContext):
    def greet(step: StepContext):
        step.logger.info(f"Greeting step running for: {event}")
        return f"Hello, {event}!"

    return context.step(greet)
