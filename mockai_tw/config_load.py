"""Load the config: a YAML file, ``MOCKAI_*`` overrides on top, then the rules.

The loader around the schema (``config.py``): it reads the file within its
bounds (size, nesting, values after aliases), applies the environment, lets
the schema validate the settings and the rule parser the ``rules:``.  Every
failure, whatever its cause, is one ``ConfigError`` line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from mockai_tw.checks import kind_of
from mockai_tw.config import Config, ConfigError, build_config, setting_type
from mockai_tw.engine.rules import RuleError, parse_rules
from mockai_tw.recording.setup import load_recordings

ENV_PREFIX = "MOCKAI_"
#: A config file larger than this is refused unread.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: Mappings and lists nest at most this deep (the top-level mapping is level 1).
MAX_DEPTH = 64
#: And hold at most this many values in all, an alias counted at every use.
MAX_VALUES = 1_000_000


def load_config(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; raises ConfigError with a one-line message."""
    raw = read_yaml(_read_text(path), path)
    return parse_config(raw, environ, source=path)


def parse_config(
    raw: Any,
    environ: Mapping[str, str] | None = None,
    source: str = "",
    base_dir: str | None = None,
) -> Config:
    """Validate an already-parsed YAML document (``None`` is an empty file).

    ``base_dir`` is where the rules' ``file:`` fixtures live (the config
    file's directory; default: the directory of ``source``, else the cwd).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        # Only the kind: a file holding nothing but a token is a secret.
        raise ConfigError(
            source, f"the top level must be a mapping, got {kind_of(raw)}"
        )
    raw = _with_environment(raw, os.environ if environ is None else environ)
    if raw.get("workers") == "auto":  # one per CPU: the schema's 0
        raw["workers"] = 0
    _check_size(raw, source)
    # Rules are not plain settings: their own parser validates them.
    raw_rules = raw.pop("rules", None)
    if "recordings" in raw:
        raise ConfigError(
            "recordings", "not a setting (recordings are loaded from recording.dir)"
        )
    if base_dir is None and source:
        base_dir = os.path.dirname(os.path.abspath(source))
    with _refuse_exhaustion(source):
        config = build_config(raw)
        try:
            rules = parse_rules(raw_rules, "rules", base_dir)
        except RuleError as error:
            raise ConfigError(error.path, error.message) from None
    if rules:
        config = dataclasses.replace(config, rules=rules)
    # Recordings load at start and at each reload, refused like a bad key.
    return load_recordings(config, base_dir)


# --- the file ----------------------------------------------------------------


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(path, f"cannot read: {error.strerror or error}") from None
    except ValueError as error:  # a NUL in the path
        raise ConfigError(path, f"cannot read: {error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, f"is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(path, f"is not UTF-8 text (line {line})") from None


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__()
        self.mark = mark


def _where(mark: Any) -> str:
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


def _parse_yaml(text: str) -> Any:
    """One YAML document; raises ``yaml.YAMLError``, or ``_TooDeep`` past
    MAX_DEPTH -- checked on the parser's events first, since PyYAML's
    composer recurses once per level and the parser does not."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.events.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooDeep(event.start_mark)
        elif isinstance(event, yaml.events.CollectionEndEvent):
            depth -= 1
    try:
        return yaml.safe_load(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise _TooDeep(None) from None


def read_yaml(text: str, source: str) -> Any:
    """The YAML document in ``text``; any failure a ConfigError on ``source``."""
    try:
        return _parse_yaml(text)
    except _TooDeep as error:
        raise ConfigError(
            source, f"nested deeper than {MAX_DEPTH} levels{_where(error.mark)}"
        ) from None
    except yaml.reader.ReaderError as error:
        # A control character: the reader gives an offset, not a mark.
        start = text.rfind("\n", 0, error.position) + 1
        line = text.count("\n", 0, error.position) + 1
        where = f" (line {line}, column {error.position - start + 1})"
        raise ConfigError(
            source,
            f"not valid YAML{where}: {error.reason} (#x{error.character:04x})",
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or "syntax error"
        raise ConfigError(source, f"not valid YAML{_where(mark)}: {problem}") from None
    except MemoryError:
        raise ConfigError(source, "too large to load") from None


# --- the document ------------------------------------------------------------


def _check_size(raw: Any, source: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH or holding more than
    MAX_VALUES values: aliases expanded (a bomb of them, or one inside its
    own anchor), the environment applied, or deep data given as a dict."""
    values = 0
    stack: list[tuple[Any, int]] = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items: Any = value.values()
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise ConfigError(source, f"nested deeper than {MAX_DEPTH} levels")
        values += len(items)
        if values > MAX_VALUES:
            raise ConfigError(
                source,
                f"has more than {MAX_VALUES:,} values"
                " (an alias counts each time it is used)",
            )
        stack.extend((item, depth + 1) for item in items)


@contextlib.contextmanager
def _refuse_exhaustion(source: str) -> Iterator[None]:
    """The last guard behind the bounds: exhaustion is a config error too."""
    try:
        yield
    except RecursionError:
        raise ConfigError(source, "nested too deeply to load") from None
    except MemoryError:
        raise ConfigError(source, "too large to load") from None


# --- the environment ---------------------------------------------------------


#: What Kubernetes sets in every pod for a Service named ``mockai`` (unless
#: ``enableServiceLinks: false``): not settings, so not refused as unknown.
_SERVICE_LINK = re.compile(
    r"MOCKAI_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_[A-Z]+)?)?)$"
)


def _with_environment(
    raw: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """``raw`` with ``MOCKAI_SECTION__KEY=value`` variables over it (a copy)."""
    out = dict(raw)
    for name, text in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == "MOCKAI_CONFIG":
            continue
        if _SERVICE_LINK.match(name):
            continue  # Kubernetes' own, for a Service named mockai
        key = name[len(ENV_PREFIX) :].lower()
        parts = ["http", "listen"] if key == "listen" else key.split("__")
        tp = setting_type(parts)
        if tp is None:
            raise ConfigError(name, f"unknown setting {'.'.join(parts)}")
        target = out
        for part in parts[:-1]:
            sub = target.get(part)
            target[part] = dict(sub) if isinstance(sub, dict) else {}
            target = target[part]
        target[parts[-1]] = _env_value(name, text, tp)
    return out


def _env_value(name: str, text: str, tp: Any) -> Any:
    """A variable's text as the setting's type expects it (YAML scalars)."""
    if tp in (str, str | None):
        return text
    if typing.get_origin(tp) is tuple:
        return [v.strip() for v in text.split(",") if v.strip()]
    try:
        return _parse_yaml(text)
    except _TooDeep as error:
        raise ConfigError(
            name, f"nested deeper than {MAX_DEPTH} levels{_where(error.mark)}"
        ) from None
    except yaml.YAMLError:
        return text  # then the schema says what it should have been
