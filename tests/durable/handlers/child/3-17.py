"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration

# 3-17: a child context that only logs (replay logging on) and returns its input: not run again on replay.
@durable_execution
def handler(event, context: DurableContext):
    def log_only(child: DurableContext):
        child.logger.with_is_replaying(lambda: False).info(f"the child context got {event}")
        return event

    result = context.run_in_child_context(log_only, name="log_only")
    context.wait(Duration.from_seconds(1))
    return result
