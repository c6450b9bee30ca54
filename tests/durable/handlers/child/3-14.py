"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets

# 3-14: the child context's serdes upper-cases its result.
from aws_durable_execution_sdk_python.serdes import SerDes


class Upper(SerDes):
    def serialize(self, value, _):
        return value.upper()

    def deserialize(self, data, _):
        return data


@durable_execution
def handler(event, context: DurableContext):
    config = ChildConfig(serdes=Upper())
    return context.run_in_child_context(lambda child: child.step(lambda _: event, name="echo"), config=config, name="child")
