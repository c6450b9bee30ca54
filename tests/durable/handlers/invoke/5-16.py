"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-16: the result through a deserializer of its own (upper-cased).
import json

from aws_durable_execution_sdk_python.serdes import SerDes


class UpperResult(SerDes):
    def serialize(self, value, _):
        return json.dumps(value)

    def deserialize(self, data, _):
        return data.upper()


@durable_execution
def handler(event, context: DurableContext):
    return context.invoke(ECHO, event, config=InvokeConfig(serdes_result=UpperResult()))
