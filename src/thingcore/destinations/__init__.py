"""Where rule actions deliver: the embedded defaults in the data dir and clients of real external systems.

One module per kind of destination (objects, metrics, notifications, search, tables, streams, queues); the
rule actions in :mod:`thingcore.rules.actions` only render AWS parameters and call these.
"""
