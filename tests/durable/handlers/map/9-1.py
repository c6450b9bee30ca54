"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-1: a step per item.
@durable_execution
def handler(event, context: DurableContext):
    def greet(ctx, item, index, items):
        return ctx.step(lambda _: f"Hello, {item}!", name=f"greet-{index}")

    return context.map(event, greet, name="map", config=MAP_ONE_AT_A_TIME).get_results()
