"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import CallbackError, DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration

# 4-15: a deserializer makes the JSON payload a typed object, its time a timestamp.
import json
from dataclasses import asdict, dataclass
from datetime import datetime

from aws_durable_execution_sdk_python.serdes import SerDes


@dataclass
class Received:
    id: str
    message: str
    timestamp: int


class ReceivedSerDes(SerDes):
    def serialize(self, value, _):
        return json.dumps(asdict(value))

    def deserialize(self, data, _):
        raw = json.loads(data)
        when = datetime.fromisoformat(raw["timestamp"].replace("Z", "+00:00"))
        return Received(id=raw["id"], message=raw["message"], timestamp=int(when.timestamp()))


@durable_execution
def handler(event, context: DurableContext):
    received = context.create_callback(name=event, config=CallbackConfig(serdes=ReceivedSerDes())).result()
    return {"received": asdict(received)}
