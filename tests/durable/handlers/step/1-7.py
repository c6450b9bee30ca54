"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution

# 1-7: the step context's logger writes the step's start and end (read back from the function's logs).
@durable_execution
def handler(event, context: DurableContext):
    def greet(step: StepContext):
        step.logger.info(f"Greeting step started for: {event}")
        greeting = f"Hello, {event}!"
        step.logger.info(f"Greeting step completed with: {greeting}")
        return greeting

    return context.step(greet)
