# Memory-bound: a 300 MB working set loaded at init, as a model would be (written, so the pages count
# against the memory limit); each call then looks a record up in it and waits 50 ms on I/O, so more memory
# than the set needs buys nothing. (A call that did nothing else would take about a millisecond: then the
# CPU share that grows with memory, and the runtime's own work per call, would decide the size instead.)
import time

MODEL = b'x' * (300 << 20)


def handler(event, context):
    time.sleep(0.05)
    return MODEL[event['i']] + len(MODEL) >> 20
