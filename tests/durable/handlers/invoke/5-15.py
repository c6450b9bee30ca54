"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, InvokeError, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig

from conformance_helpers import ECHO, FAIL

# 5-15: the payload through a serializer of its own (its strings upper-cased).
import json

from aws_durable_execution_sdk_python.serdes import SerDes


class UpperPayload(SerDes):
    def serialize(self, value, _):
        return json.dumps({k: v.upper() if isinstance(v, str) else v for k, v in value.items()})

    def deserialize(self, data, _):
        return json.loads(data)


@durable_execution
def handler(event, context: DurableContext):
    return context.invoke(ECHO, event, config=InvokeConfig(serdes_payload=UpperPayload()))
