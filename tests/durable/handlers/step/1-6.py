"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision, RetryPresets, RetryStrategyConfig, create_retry_strategy

# 1-6: a step's own serdes upper-cases strings as it serializes them.
import json

from aws_durable_execution_sdk_python.serdes import SerDes


class Upper(SerDes):
    def serialize(self, value, _):
        return json.dumps(value.upper() if isinstance(value, str) else value)

    def deserialize(self, data, _):
        return json.loads(data)


@durable_execution
def handler(event, context: DurableContext):
    return context.step(lambda _: event, name="return_input", config=StepConfig(serdes=Upper()))
