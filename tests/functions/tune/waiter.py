# I/O-bound: waits 200 ms; more memory buys nothing.
import time


def handler(event, context):
    time.sleep(0.2)
    return 'ok'
