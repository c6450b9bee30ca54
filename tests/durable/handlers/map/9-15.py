"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, MapConfig, NestingType

from conformance_helpers import MAP_ONE_AT_A_TIME, fail_on, map_sequential, projection


# 9-15: the second iteration waits; on resume the first is not run again.
@durable_execution
def handler(event, context: DurableContext):
    def run(ctx, item, index, items):
        if index == 1:
            ctx.wait(Duration.from_seconds(1))
        return ctx.step(lambda _: item, name=item)

    return context.map(["r0", "r1"], run, config=MAP_ONE_AT_A_TIME).get_results()
