"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-17: a wait after a map that succeeded.
@durable_execution
def handler(event, context: DurableContext):
    r = context.map(["a", "b"], lambda ctx, item, index, items: item.upper(), config=MAP_ONE_AT_A_TIME)
    context.wait(Duration.from_seconds(1))
    return r.get_results()
