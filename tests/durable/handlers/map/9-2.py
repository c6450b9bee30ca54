"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-2: no name; each item doubled at once.
@durable_execution
def handler(event, context: DurableContext):
    return context.map(event, lambda ctx, item, index, items: item * 2, config=MAP_ONE_AT_A_TIME).get_results()
