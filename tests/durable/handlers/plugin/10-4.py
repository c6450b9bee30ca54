"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from conformance_helpers import ConfPluginFactory

# 10-4: a plugin whose every hook fails changes nothing.
@durable_execution(plugins=[ConfPluginFactory("CONFPLUGIN-FAULTY", faulty=True)])
def handler(event, context: DurableContext):
    return context.step(lambda _: f"Hello, {event}!")
