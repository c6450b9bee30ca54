"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-16: a deserializer makes the payload a number.
from aws_durable_execution_sdk_python.serdes import SerDes


class Number(SerDes):
    def serialize(self, value, _):
        return str(value)

    def deserialize(self, data, _):
        return int(data.strip().strip('"'))


@durable_execution
def handler(event, context: DurableContext):
    count = context.create_callback(name=event, config=CallbackConfig(serdes=Number())).result()
    return {"count": count, "doubled": count * 2}
