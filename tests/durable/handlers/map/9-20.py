"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from aws_durable_execution_sdk_python.serdes import JsonSerDes

from conformance_helpers import OpSerDes


# 9-20: the same, read back through it after a wait.
@durable_execution
def handler(event, context: DurableContext):
    config = MapConfig(max_concurrency=1, serdes=OpSerDes(), item_serdes=JsonSerDes())
    r = context.map(["x", "y"], lambda ctx, item, index, items: item.upper(), config=config)
    context.wait(Duration.from_seconds(1))
    return r.get_results()
