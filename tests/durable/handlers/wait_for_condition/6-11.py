"""A conformance handler, written from the requirement's description."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitForConditionDecision,
    WaitStrategyConfig,
    create_wait_strategy,
)

from conformance_helpers import until


# 6-11: the state goes through a serdes of its own at each checkpoint.
import base64

from aws_durable_execution_sdk_python.serdes import SerDes


class Base64(SerDes):
    def serialize(self, value, _):
        return base64.b64encode(value.encode()).decode()

    def deserialize(self, data, _):
        return base64.b64decode(data).decode()


def strategy(state, attempts):
    if len(state) < 2:
        return WaitForConditionDecision.continue_waiting(Duration.from_seconds(1))
    return WaitForConditionDecision.stop_polling()


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForConditionConfig(strategy, initial_state="", serdes=Base64())
    return context.wait_for_condition(lambda s, _: s + "x", config)
