"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration

# 3-11: a child context whose result is too large to checkpoint (ReplayChildren): it runs again on replay,
# logging (replay logging on) each time.
@durable_execution
def handler(event, context: DurableContext):
    def build(child: DurableContext):
        child.logger.with_is_replaying(lambda: False).info(f"building the large result for {event}")
        small = child.step(lambda _: "x")
        return small * (300 * 1024)

    large = context.run_in_child_context(build, name="build")
    context.wait(Duration.from_seconds(1))
    return len(large)
