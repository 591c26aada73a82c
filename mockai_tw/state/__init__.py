"""Shared state across worker processes and replicas: the Redis store.

``url`` (parse and redact ``state.url``), ``types`` (what the store takes
and gives) and ``scripts`` (its Lua) are leaves; ``redis`` is the Twisted
client.  Importing this package loads none of them.
"""
