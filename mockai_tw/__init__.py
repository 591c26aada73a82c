"""mockai: a mock of the OpenAI HTTP API, run as a Twisted daemon."""

__version__ = "0.1.0"
