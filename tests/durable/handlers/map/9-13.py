"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-13: iterations named by their item.
@durable_execution
def handler(event, context: DurableContext):
    config = MapConfig(max_concurrency=1, item_namer=lambda item, index: f"item-{item}")
    return context.map(event, lambda ctx, item, index, items: item * 10, config=config).get_results()
