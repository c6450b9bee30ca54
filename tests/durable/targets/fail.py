"""A target of the chained-invoke requirements: a durable function that fails."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    raise ValueError("the target function fails")
