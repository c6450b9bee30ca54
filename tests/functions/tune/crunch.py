# CPU-bound: pure Python arithmetic, event['n'] iterations (2,000,000 take ~150 ms at one full core).
def handler(event, context):
    x = 0
    for i in range(event['n']):
        x += i * i
    return x % 1000
