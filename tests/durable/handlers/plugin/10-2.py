"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from conformance_helpers import ConfPluginFactory

# 10-2: the plugin's operation hooks carry the step's checkpointed id.
@durable_execution(plugins=[ConfPluginFactory()])
def handler(event, context: DurableContext):
    return context.step(lambda _: f"Hello, {event}!")
