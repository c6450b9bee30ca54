"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-14: each iteration's result through a serdes of its own.
from aws_durable_execution_sdk_python.serdes import SerDes


class Encoded(SerDes):
    def serialize(self, value, _):
        return "wrapped:" + value

    def deserialize(self, data, _):
        return data.removeprefix("wrapped:")


@durable_execution
def handler(event, context: DurableContext):
    config = MapConfig(max_concurrency=1, item_serdes=Encoded())
    return context.map(["x", "y"], lambda ctx, item, index, items: item.upper(), config=config).get_results()
