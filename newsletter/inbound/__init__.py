"""Mail that comes back: bounces, spam complaints and mailto unsubscribes.

Parse the message, match it with our evidence, act on the reader and the delivery; and the
deliverability guard, which pauses a send whose hard-bounce or complaint rate reaches its limit.
"""
