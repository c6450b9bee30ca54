"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from conformance_helpers import ConfPluginFactory

# 10-5: two plugins, A then B, each told of the invocation.
@durable_execution(plugins=[ConfPluginFactory("CONFPLUGIN-A"), ConfPluginFactory("CONFPLUGIN-B")])
def handler(event, context: DurableContext):
    return context.step(lambda _: f"Hello, {event}!")
