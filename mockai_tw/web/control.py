"""``/_mock/``: the control API a test drives the mock with, mimic-style.

Rules (list, add, replace, delete, reset), the request journal (read with
filters, clear), the effective config (secrets redacted) and a reload of the
config file.  Off unless ``admin_token`` is configured (then a 404 like any
unknown path); with it, every call needs ``Authorization: Bearer
<admin_token>`` -- that token and no other -- or gets a 401.  The operations
are plain functions of the server state, so the in-process test helper
calls the very same code.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.config import ConfigError, is_secret
from mockai_tw.engine.rules import Rule, RuleError, parse_rule
from mockai_tw.errors import ApiError, invalid
from mockai_tw.journal import Journal
from mockai_tw.request.common import parse_body
from mockai_tw.state.url import redacted
from mockai_tw.web.resources import (
    ApiResource,
    Branch,
    ErrorResource,
    bearer,
    invalid_url,
)
from mockai_tw.web.shared import Shared, ThroughStore
from mockai_tw.web.site import ApiRequest, send_json

if TYPE_CHECKING:
    from mockai_tw.web.face import AdminFace

POSITIONS = ("first", "last")


def _mask(token: str) -> str:
    if len(token) < 8:
        return "*" * len(token)
    return token[:3] + "*" * (len(token) - 7) + token[-4:]


def check_admin(request: server.Request, state: AdminFace) -> ApiError | None:
    """None when the request carries the admin token; else the error to send."""
    admin = state.config.admin_token
    if not admin:
        return invalid_url(request)
    if not hmac.compare_digest(bearer(request), admin.encode()):
        return ApiError(
            401,
            "The control API needs the admin token:"
            " Authorization: Bearer <admin_token>.",
            code="invalid_admin_token",
        )
    return None


# --- operations (shared with mockai_tw.testing) ------------------------------


def _base_dir(state: AdminFace) -> str | None:
    path = state.config_path
    return os.path.dirname(os.path.abspath(path)) if path else None


def _parse(state: AdminFace, body: Mapping[str, Any]) -> Rule:
    try:
        return parse_rule(dict(body), "rule", _base_dir(state))
    except RuleError as error:
        raise invalid(str(error), param=error.path, code="invalid_rule") from None


def list_rules(state: AdminFace) -> dict[str, Any]:
    entries = state.rules.entries(state.clock.seconds())
    return {
        "rules": [entry.view(i) for i, entry in enumerate(entries)],
        "default": "a pick from replies (the answer when no rule matches)",
    }


def add_rule(state: AdminFace, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` is a rule (as in the config) plus ``position``: first or last."""
    body = dict(body)
    position = body.pop("position", "last")
    if position not in POSITIONS:
        raise invalid(
            f"position must be first or last, got {position!r}", param="position"
        )
    rule = _parse(state, body)
    now = state.clock.seconds()
    try:
        entry = state.rules.add(rule, now, position)
    except RuleError as error:
        raise ApiError(409, str(error), param="name", code="rule_exists") from None
    entries = state.rules.entries()
    return entry.view(entries.index(entry))


def replace_rule(
    state: AdminFace, rule_id: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    rule = _parse(state, body)
    entry = state.rules.replace(rule_id, rule, state.clock.seconds())
    if entry is None:
        raise _no_rule(rule_id)
    return entry.view(state.rules.entries().index(entry))


def delete_rule(state: AdminFace, rule_id: str) -> dict[str, Any]:
    if not state.rules.delete(rule_id):
        raise _no_rule(rule_id)
    return {"id": rule_id, "deleted": True}


def reset_rules(state: AdminFace) -> dict[str, Any]:
    """Back to the config file's rules, their counters fresh."""
    state.rules.reset(state.config.rules, state.clock.seconds())
    return list_rules(state)


def _no_rule(rule_id: str) -> ApiError:
    return ApiError(404, f"No rule with id {rule_id!r}.", code="rule_not_found")


def _plain(value: Any) -> Any:
    if isinstance(value, Rule):
        return dict(value.source)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _masked(value: Any) -> Any:
    """Every secret-named key at any depth, masked (``config.is_secret``)."""
    if isinstance(value, dict):
        return {
            k: _mask_secret(v) if is_secret(k) else _masked(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _mask_secret(value: Any) -> Any:
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, list):
        return [_mask(v) if isinstance(v, str) else v for v in value]
    return value


def effective_config(state: AdminFace) -> dict[str, Any]:
    """The config in force, secrets masked."""
    # Recordings are listed by GET /_mock/recordings, not here.
    shown = dataclasses.replace(state.config, recordings=())
    out: dict[str, Any] = _masked(_plain(shown))
    out.pop("recordings", None)
    # A password in state.url is masked like any secret.
    out["state"]["url"] = redacted(state.config.state.url)
    shared = state.shared
    described = shared.describe() if shared is not None else {"backend": "memory"}
    return {"config_path": state.config_path, "config": out, "state": described}


def read_journal(
    state: AdminFace,
    path: str | None = None,
    model: str | None = None,
    rule: str | None = None,
    since: float | None = None,
    limit: int | None = None,
    journal: Journal | None = None,
) -> dict[str, Any]:
    """``journal``: the fleet's, read from the shared store (else this process's)."""
    journal = state.journal if journal is None else journal
    records = journal.query(path=path, model=model, rule=rule, since=since, limit=limit)
    return {
        "enabled": journal.enabled,
        "size": journal.size,
        "max_bytes": journal.max_bytes,
        "bytes": journal.held,
        "requests": records,
    }


def clear_journal(state: AdminFace) -> dict[str, Any]:
    return {"deleted": state.journal.clear()}


def reload_config(state: AdminFace) -> dict[str, Any]:
    """Re-read the config file; a bad one is a 400 naming the key, old kept."""
    try:
        state.reload()
    except ConfigError as error:
        raise invalid(
            f"Config not reloaded: {error}", param=error.path, code="invalid_config"
        ) from None
    return {
        "reloaded": True,
        "config_path": state.config_path,
        "rules": len(state.config.rules),
    }


# --- resources ---------------------------------------------------------------


def _args(request: server.Request) -> dict[str, str]:
    out = {}
    for key, values in (request.args or {}).items():
        if values:
            out[key.decode("utf-8", "replace")] = values[-1].decode("utf-8", "replace")
    return out


def _json(request: server.Request, value: Any, status: int = 200) -> bytes:
    return send_json(request, status, orjson.dumps(value))


def _body(request: server.Request) -> dict[str, Any]:
    api_request: ApiRequest = request  # type: ignore[assignment]
    return parse_body(api_request.body())


class AdminResource(ThroughStore):
    """A control resource: it sees the admin face, not only the request one.

    With shared state, a call first reads what it shows from the store (the
    run-time rules and their counters, the journal) and a change to the
    rules is stored with a compare-and-set, tried again on a conflict."""

    state: AdminFace

    async def shared(self, request: server.Request, shared: Shared) -> bytes | int:
        """Answer with the fleet's state (the resource's own ``render``)."""
        await shared.sync(self.state.rules)
        return ApiResource.render(self, request)

    async def shown(self, shared: Shared) -> None:
        """The rules' counters as the store counts them, for the views."""
        entries = self.state.rules.entries(self.state.clock.seconds())
        counts = await shared.store.counters([e.counter for e in entries])
        for entry in entries:
            count = counts.get(entry.counter)
            if count is not None:
                entry.hits = count.hits
                entry.left = entry.rule.times if count.left is None else count.left

    async def changed(self, request: server.Request, shared: Shared) -> bytes | int:
        """A change to the run-time rules, stored for every process."""
        result = await shared.change_rules(
            self.state.rules, lambda: ApiResource.render(self, request)
        )
        await self.shown(shared)
        return result


class _RulesResource(AdminResource):
    async def shared(self, request: server.Request, shared: Shared) -> bytes | int:
        if request.method in (b"GET", b"HEAD"):
            await shared.sync(self.state.rules)
            await self.shown(shared)
            return ApiResource.render(self, request)
        if request.method == b"DELETE" and isinstance(self, Rules):
            # Back to the file's rules: every counter afresh, fleet-wide.
            await shared.store.reset_counters()
        return await self.changed(request, shared)


class Control(Branch):
    """``/_mock``: admits the admin token only, then routes."""

    state: AdminFace

    def __init__(self, state: AdminFace) -> None:
        super().__init__(state)
        rules = Rules(state)
        self.putChild(b"rules", rules)
        self.putChild(b"config", ConfigView(state))
        self.putChild(b"requests", Requests(state))
        self.putChild(b"reload", Reload(state))
        self.putChild(b"recordings", RecordingsView(state))

    def getChildWithDefault(self, path: bytes, request: server.Request) -> IResource:
        error = check_admin(request, self.state)
        if error is not None:
            return ErrorResource(error)
        return super().getChildWithDefault(path, request)

    def render_GET(self, request: server.Request) -> bytes:
        error = check_admin(request, self.state)
        if error is not None:
            raise error
        return _json(
            request,
            {
                "endpoints": [
                    "GET /_mock/rules",
                    "POST /_mock/rules",
                    "DELETE /_mock/rules",
                    "GET /_mock/rules/{id}",
                    "PUT /_mock/rules/{id}",
                    "DELETE /_mock/rules/{id}",
                    "GET /_mock/requests",
                    "DELETE /_mock/requests",
                    "GET /_mock/config",
                    "POST /_mock/reload",
                    "GET /_mock/recordings",
                    "POST /_mock/recordings/{id}/promote",
                ]
            },
        )


class Rules(_RulesResource):
    """``/_mock/rules``: list, add, reset; ``/_mock/rules/{id}`` for one."""

    def render_GET(self, request: server.Request) -> bytes:
        return _json(request, list_rules(self.state))

    def render_POST(self, request: server.Request) -> bytes:
        return _json(request, add_rule(self.state, _body(request)), 201)

    def render_DELETE(self, request: server.Request) -> bytes:
        return _json(request, reset_rules(self.state))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path:
            return self
        return RuleItem(self.state, path.decode("utf-8", "replace"))


class RuleItem(_RulesResource):
    isLeaf = True

    def __init__(self, state: AdminFace, rule_id: str) -> None:
        super().__init__(state)
        self.rule_id = rule_id

    def render_GET(self, request: server.Request) -> bytes:
        entries = self.state.rules.entries(self.state.clock.seconds())
        for i, entry in enumerate(entries):
            if entry.id == self.rule_id:
                return _json(request, entry.view(i))
        raise _no_rule(self.rule_id)

    def render_PUT(self, request: server.Request) -> bytes:
        return _json(request, replace_rule(self.state, self.rule_id, _body(request)))

    def render_DELETE(self, request: server.Request) -> bytes:
        return _json(request, delete_rule(self.state, self.rule_id))


class ConfigView(AdminResource):
    def render_GET(self, request: server.Request) -> bytes:
        return _json(request, effective_config(self.state))


class Requests(AdminResource):
    """``GET /_mock/requests?path=&model=&rule=&since=&limit=``; ``DELETE`` clears."""

    # The fleet's journal while a shared read is answered.
    fleet: Journal | None = None

    def render_GET(self, request: server.Request) -> bytes:
        args = _args(request)
        unknown = set(args) - {"path", "model", "rule", "since", "limit"}
        if unknown:
            name = sorted(unknown)[0]
            raise invalid(
                f"Unknown filter {name!r} (known: path, model, rule, since, limit).",
                param=name,
            )
        since = limit = None
        if "since" in args:
            try:
                since = float(args["since"])
            except ValueError:
                raise invalid(
                    "since must be a Unix time in seconds", param="since"
                ) from None
        if "limit" in args:
            try:
                limit = int(args["limit"])
            except ValueError:
                limit = 0
            if limit < 1:
                raise invalid("limit must be a positive integer", param="limit")
        return _json(
            request,
            read_journal(
                self.state,
                path=args.get("path"),
                model=args.get("model"),
                rule=args.get("rule"),
                since=since,
                limit=limit,
                journal=self.fleet,
            ),
        )

    def render_DELETE(self, request: server.Request) -> bytes:
        return _json(request, clear_journal(self.state))

    async def shared(self, request: server.Request, shared: Shared) -> bytes | int:
        if request.method == b"DELETE":
            deleted = await shared.store.journal_clear()
            self.state.journal.clear()
            return _json(request, {"deleted": deleted})
        records = await shared.store.journal_all()
        journal = self.state.journal
        fleet = Journal(journal.size, journal.enabled, journal.max_bytes)
        fleet.adopt(records)
        self.fleet = fleet
        try:
            return ApiResource.render(self, request)
        finally:
            self.fleet = None


class Reload(AdminResource):
    def render_POST(self, request: server.Request) -> bytes:
        return _json(request, reload_config(self.state))


def list_recordings(state: AdminFace) -> dict[str, Any]:
    recorder = state.recorder
    return {
        "mode": recorder.mode,
        "dir": recorder.config.dir,
        "recordings": recorder.book.view(),
    }


def promote_recording(state: AdminFace, rec_id: str) -> dict[str, Any]:
    """A recording as a rule (checked by the rule parser), and as YAML."""
    rule = state.recorder.promote(rec_id)
    if rule is None:
        raise ApiError(
            404, f"No recording with id {rec_id!r}.", code="recording_not_found"
        )
    try:
        if "{{" in orjson.dumps(rule.get("answer")).decode():
            # A template would change it: the text must stay the text.
            raise RuleError("rule.answer.text", "holds {{, which a template reads")
        parse_rule(dict(rule), "rule", _base_dir(state))
    except RuleError as error:
        raise ApiError(
            422,
            f"Recording {rec_id!r} cannot be a rule: {error}",
            code="not_promotable",
        ) from None
    text = yaml.safe_dump([rule], allow_unicode=True, sort_keys=False)
    return {"id": rec_id, "rule": rule, "yaml": text}


class RecordingsView(AdminResource):
    """``GET /_mock/recordings``; ``POST /_mock/recordings/{id}/promote``."""

    def render_GET(self, request: server.Request) -> bytes:
        return _json(request, list_recordings(self.state))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path:
            return self
        if request.postpath == [b"promote"]:
            return Promote(self.state, path.decode("utf-8", "replace"))
        return ErrorResource(invalid_url(request))


class Promote(AdminResource):
    isLeaf = True

    def __init__(self, state: AdminFace, rec_id: str) -> None:
        super().__init__(state)
        self.rec_id = rec_id

    def render_POST(self, request: server.Request) -> bytes:
        return _json(request, promote_recording(self.state, self.rec_id))


def control_tree(state: AdminFace) -> Control:
    """The ``/_mock`` resource, for the root to mount."""
    return Control(state)
