"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-12: FLAT nesting.
@durable_execution
def handler(event, context: DurableContext):
    def run(ctx, item, index, items):
        return ctx.step(lambda _: item, name=item)

    config = MapConfig(max_concurrency=1, nesting_type=NestingType.FLAT)
    return context.map(["fa", "fb"], run, config=config).get_results()
