"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-11: two at a time; results in item order.
@durable_execution
def handler(event, context: DurableContext):
    r = context.map(["r0", "r1", "r2"], lambda ctx, item, index, items: item, config=MapConfig(max_concurrency=2))
    return r.get_results()
