"""schemathesis hooks for `.ci/schemathesis` (loaded through `hooks` in schemathesis.toml).

Each hook corrects one limit of the tool, not of the service or of `openapi.yaml`, and
is as narrow as the limit: every other case is sent and every other failure counts.

1. `name=active` on `/sessions/{name}` (negative mode). `openapi.yaml` excludes
   `active` from `SessionName` (`not: {const: active}`) because `/sessions/active` is a
   route of its own. To violate that `not`, schemathesis sends exactly `active` and
   expects a rejection; but `/sessions/active` is not `/sessions/{name}` with a bad
   name, it is another operation (getCurrentSession, switchSession,
   clearCurrentSession), which answers 200 to GET/HEAD/DELETE and 405 to PATCH, as the
   contract says. No request to `/sessions/{name}` can carry that name, so these cases
   are dropped before they are sent (`filter_case`, the one filter every phase applies,
   the coverage phase included). `/sessions/active` is tested as its own operations,
   and `active` on `/sessions/{name}/persona` (400) is still sent.

2. ST202 for an unknown persona library key on `POST /sessions` (positive mode). A
   `persona` string must name a persona of the library, and which keys exist is data
   (`<personas_dir>/<key>.json`, which the operator may add to), not schema: the
   contract documents an unknown key as 422. An `enum` of the shipped keys would make
   the contract wrong for any other library, so the contract keeps `PersonaKey`, and
   this drops exactly that failure: a 422 whose detail says the key is not in the
   library, for a key that is indeed not one of the library's (the run's library is
   the shipped one, `personas/*.json`). Any other 422 on a valid body still fails.

3. ST302 "created resource not found" after the session was deleted. The tool follows
   the `switchSession` link (`PUT /sessions/active` with `{"name": <created name>}`)
   after a `DELETE /sessions/{name}` of that same session in the same scenario, and
   expects the switch to find it. Its own "was it deleted since?" test only compares
   URL paths, and this operation names the session in its body, not its path, so the
   delete goes unseen. The hooks record, in call order (the run uses one worker), which
   sessions were created and deleted; the failure is dropped only when the session it
   names was deleted after it was last created. A session that exists and is not
   found still fails. A rename (`POST /sessions/{name}/rename`) frees the old name as a
   delete does, and creates the new one, and is recorded so.

4. ST202 for a page cursor the service never gave on `GET /sessions` (positive mode).
   `after` is opaque: the service hands it out in a `Link` header (base64url of the
   last item's creation time and name), and any other value is 422. What a valid
   cursor is depends on what the service gave, so no schema can say it; the contract
   gives its alphabet and length and documents the 422. This drops exactly that
   failure: a 422 whose detail says `after` is not a cursor, for an `after` that is
   indeed not one (it does not decode to `[timestamp, session name]`). A refusal of a
   well-formed cursor, or any other 422, still fails. The same for `GET /archive`,
   whose cursor is the hex of the last archive id of a page.

5. ST202 for a 412 to a write sent with `If-Match` (positive mode). The contract
   describes an entity tag's form (`EntityTags`), and the tool makes up tags of that
   form; but whether a tag is current is state, not schema: a made-up tag names no
   version the session is at, and `precondition-failed` is the answer the contract
   gives for it. Dropped only when the request carried `If-Match` and the answer is a
   412 `precondition-failed`; the same writes without the header, and tags that are
   malformed (400), are still checked.

6. ST202 for an unknown `parent` on `POST /sessions/{name}/conversations` (positive
   mode). `parent` must be one of the session's own conversations, which is data (the
   ids the bot reported), like library keys in 2: the tool sends a well-formed UUID
   the session never had, and the contract documents that as 422. Dropped only for a
   422 whose detail says the parent is not one of the session's conversations, for a
   request that gave `parent`; any other 422 on a valid body still fails.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from datetime import datetime
from pathlib import Path

import schemathesis

RESERVED = "active"
# The prefix of every problem type.
TAG = "tag:session-manager,2026:"
# The library the run's service is seeded with: the shipped personas.
LIBRARY = frozenset(p.stem for p in (Path(__file__).resolve().parent.parent / "personas").glob("*.json"))
# Session name -> "created" or "deleted": the last successful write of that name.
_last_write: dict[str, str] = {}


def _dropped(reason: str, failure, case, response) -> bool:
    """Drops a failure, listing it in `$SCHEMATHESIS_DROPPED_LOG` when set (for the CI log)."""
    log = os.environ.get("SCHEMATHESIS_DROPPED_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{reason}\t{failure.code}\t{case.operation.label}\t{case.id}\t{response.status_code}\n")
    return False


def _route(case) -> tuple[str, str]:
    return case.operation.method.upper(), case.operation.path


def _json(response):
    try:
        return response.json()
    except Exception:
        return None


@schemathesis.hook
def filter_case(context, case):
    # 1.
    if _route(case)[1] != "/sessions/{name}":
        return True
    return (case.path_parameters or {}).get("name") != RESERVED


@schemathesis.hook
def after_call(context, case, response):
    # 3: the bookkeeping.
    if not 200 <= response.status_code < 300:
        return
    route = _route(case)
    if route == ("POST", "/sessions"):
        body = _json(response)
        if isinstance(body, dict) and isinstance(body.get("name"), str):
            _last_write[body["name"]] = "created"
    elif route == ("DELETE", "/sessions/{name}"):
        name = (case.path_parameters or {}).get("name")
        if isinstance(name, str):
            _last_write[name] = "deleted"
    elif route == ("POST", "/sessions/{name}/rename"):
        name = (case.path_parameters or {}).get("name")
        body = _json(response)
        if isinstance(name, str):
            _last_write[name] = "deleted"
        if isinstance(body, dict) and isinstance(body.get("name"), str):
            _last_write[body["name"]] = "created"


_SESSION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,50}")


def _is_archive_cursor(text: str) -> bool:
    """Whether `text` is the hex of an archive id, as `GET /archive`'s `Link` gives (see 4.)."""
    try:
        decoded = bytes.fromhex(text).decode("utf-8")
    except ValueError:
        return False
    return re.fullmatch(r"[a-zA-Z0-9_-]{1,50}\.[0-9]{8}T[0-9]{6}\.[0-9]{6}Z", decoded) is not None


def _is_cursor(text: str) -> bool:
    """Whether `text` has the form of a cursor the service gives (see 4.)."""
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created, name = json.loads(decoded)
        datetime.fromisoformat(created)
    except (binascii.Error, ValueError, TypeError):
        return False
    return isinstance(name, str) and _SESSION_NAME.fullmatch(name) is not None and name != RESERVED


def _named_session(case) -> str | None:
    """The session a request is about: in its path, or in a switch's body."""
    name = (case.path_parameters or {}).get("name")
    if name is None and _route(case) == ("PUT", "/sessions/active") and isinstance(case.body, dict):
        name = case.body.get("name")
    return name if isinstance(name, str) else None


def _header(case, name: str) -> str | None:
    for key, value in (case.headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code == "ST202" and _route(case) == ("POST", "/sessions") and response.status_code == 422:
        # 2.
        persona = case.body.get("persona") if isinstance(case.body, dict) else None
        problem = _json(response)
        detail = problem.get("detail", "") if isinstance(problem, dict) else ""
        if isinstance(persona, str) and persona not in LIBRARY and "is not in the library" in detail:
            return _dropped("unknown library key", failure, case, response)
    if failure.code == "ST202" and _route(case) == ("GET", "/sessions") and response.status_code == 422:
        # 4.
        after = (case.query or {}).get("after")
        problem = _json(response)
        detail = problem.get("detail", "") if isinstance(problem, dict) else ""
        if isinstance(after, str) and not _is_cursor(after) and "after is not a cursor" in detail:
            return _dropped("not a cursor the service gave", failure, case, response)
    if failure.code == "ST202" and _route(case) == ("GET", "/archive") and response.status_code == 422:
        # 4., for the archive.
        after = (case.query or {}).get("after")
        problem = _json(response)
        detail = problem.get("detail", "") if isinstance(problem, dict) else ""
        if isinstance(after, str) and not _is_archive_cursor(after) and "after must be a cursor" in detail:
            return _dropped("not an archive cursor the service gave", failure, case, response)
    if failure.code == "ST302" and response.status_code == 404:
        # 3.
        name = _named_session(case)
        if name is not None and _last_write.get(name) == "deleted":
            return _dropped("the session was deleted earlier", failure, case, response)
    if failure.code == "ST202" and response.status_code == 412 and _header(case, "If-Match") is not None:
        # 4.
        problem = _json(response)
        if isinstance(problem, dict) and problem.get("type") == f"{TAG}precondition-failed":
            return _dropped("a made-up If-Match tag", failure, case, response)
    if (
        failure.code == "ST202"
        and _route(case) == ("POST", "/sessions/{name}/conversations")
        and response.status_code == 422
        and (case.query or {}).get("parent") is not None
    ):
        # 5.
        problem = _json(response)
        detail = problem.get("detail", "") if isinstance(problem, dict) else ""
        if "is not one of this session's conversations" in detail:
            return _dropped("an unknown parent conversation", failure, case, response)
    return True
