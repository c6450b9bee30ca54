"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from aws_durable_execution_sdk_python.serdes import JsonSerDes

from conformance_helpers import OpSerDes


# 9-19: the whole map result through an operation-level serdes.
@durable_execution
def handler(event, context: DurableContext):
    config = MapConfig(max_concurrency=1, serdes=OpSerDes(), item_serdes=JsonSerDes())
    return context.map(["x", "y"], lambda ctx, item, index, items: item.upper(), config=config).get_results()
