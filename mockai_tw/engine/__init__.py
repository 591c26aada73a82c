"""The engine decides what to answer. Pure Python: no reactor, no HTTP, no JSON."""
