"""The web layer: Resource tree, auth, body limits, and OpenAI-shaped errors.

The only layer besides delivery that imports Twisted; it knows HTTP, not what
to answer.
"""
