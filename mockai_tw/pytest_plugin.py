"""The ``mockai`` pytest fixture: a mock OpenAI server per test.

Registered through the ``pytest11`` entry point, so installing mockai (with
the ``pytest`` extra) is enough.  Importing this module costs nothing: the
reactor is only touched when a test asks for the fixture.

    def test_reply(mockai):
        mockai.add_rule(match={"content": "hi"}, answer="Hello!")
        client = openai.OpenAI(base_url=mockai.base_url, api_key=mockai.api_key)
        ...

Override the ``mockai_config`` fixture (a config dict) or mark a test with
``@pytest.mark.mockai(config={...})`` or ``config_file="path.yaml"`` to start
it from something else; ``virtual_time=True`` in the marker gives a clock the
test moves with ``mockai.advance(seconds)`` (batches, ``ttl_s``, rate limits).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mockai_tw.testing import MockAI


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mockai(config=None, config_file=None, base_dir=None, virtual_time=False):"
        " how the mockai fixture starts its server (virtual_time: mockai.advance(s)"
        " moves its clock)",
    )


@pytest.fixture
def mockai_config() -> dict[str, Any]:
    """The config dict the ``mockai`` fixture starts from (override it)."""
    return {}


@pytest.fixture
def mockai(
    request: pytest.FixtureRequest, mockai_config: dict[str, Any]
) -> Iterator[MockAI]:
    """A started mock (``base_url``, ``api_key``, ``add_rule``, ``requests``)."""
    from mockai_tw.testing import serving

    marker = request.node.get_closest_marker("mockai")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if "config" not in kwargs and "config_file" not in kwargs:
        kwargs["config"] = mockai_config
    with serving(**kwargs) as mock:
        yield mock
