"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration
from conformance_helpers import ConfPluginFactory

# 10-6: a 2 s wait: the replay's invocation is not the first.
@durable_execution(plugins=[ConfPluginFactory()])
def handler(event, context: DurableContext):
    context.wait(Duration.from_seconds(2))
