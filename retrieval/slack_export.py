"""Slack workspace export (the folder Slack's export tool produces): one document per thread.

Layout: ``channels.json`` (public), ``groups.json`` (private), ``mpims.json``, ``dms.json`` list the
conversations; ``users.json`` the people; one folder per conversation holds ``YYYY-MM-DD.json``
files, each a list of messages. A thread (a parent and its replies, or a lone message) becomes a
document whose source is the parent's permalink. Threads of public channels take the run's scope;
private conversations are scoped to their own channel (``slack:C…``) so they never leak.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrieval.documents import Document, LoadFailure

_LISTS = {"channels.json": False, "groups.json": True, "mpims.json": True, "dms.json": True}
_SKIP_SUBTYPES = frozenset({"channel_join", "channel_leave", "channel_topic", "channel_purpose", "bot_add"})
_USER = re.compile(r"<@([A-Z0-9]+)(?:\|([^>]+))?>")
_CHANNEL = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]+))?>")
_SPECIAL = re.compile(r"<!(\w+)(?:\|[^>]*)?>")


def is_slack_export(path: Path) -> bool:
    return path.is_dir() and (path / "users.json").is_file() and any((path / n).is_file() for n in _LISTS)


def load_slack_export(root: Path, origin: str, base_url: str) -> Iterator[Document | LoadFailure]:
    users = _user_names(root / "users.json")
    for list_name, private in _LISTS.items():
        listing = root / list_name
        if not listing.is_file():
            continue
        for conv in _read_json_list(listing):
            if not isinstance(conv, dict) or "id" not in conv:
                continue
            cid = str(conv["id"])
            name = str(conv.get("name") or cid)
            folder = root / name if (root / name).is_dir() else root / cid
            if not folder.is_dir():
                continue
            yield from _conversation(folder, cid, name, private, users, origin, base_url.rstrip("/"))


def _user_names(path: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    for user in _read_json_list(path):
        if isinstance(user, dict) and "id" in user:
            profile = user.get("profile") or {}
            names[str(user["id"])] = str(
                profile.get("display_name")
                or user.get("real_name")
                or profile.get("real_name")
                or user.get("name")
                or user["id"]
            )
    return names


def _read_json_list(path: Path) -> list[Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path.name} is not a JSON list")
    return data


def _conversation(
    folder: Path, cid: str, name: str, private: bool, users: dict[str, str], origin: str, base_url: str
) -> Iterator[Document | LoadFailure]:
    threads: dict[str, list[dict[str, Any]]] = {}
    for day in sorted(folder.glob("*.json")):
        try:
            messages = _read_json_list(day)
        except (OSError, ValueError) as exc:
            yield LoadFailure(str(day), f"unreadable Slack day file: {exc}", f"{base_url}/archives/{cid}")
            continue
        for msg in messages:
            if not isinstance(msg, dict) or "ts" not in msg or msg.get("subtype") in _SKIP_SUBTYPES:
                continue
            if not str(msg.get("text") or "").strip():
                continue
            threads.setdefault(str(msg.get("thread_ts") or msg["ts"]), []).append(msg)
    for thread_ts, msgs in sorted(threads.items(), key=lambda kv: float(kv[0])):
        msgs.sort(key=lambda m: float(m["ts"]))
        lines = [f"{_author(m, users)} ({_when(m['ts'])}): {_clean(str(m['text']), users)}" for m in msgs]
        first = _clean(str(msgs[0]["text"]), users).split("\n", 1)[0]
        permalink = f"{base_url}/archives/{cid}/p{thread_ts.replace('.', '')}"
        yield Document(
            source=permalink,
            title=f"#{name}: {first[:80]}",
            text="\n\n".join(lines),
            format="slack",
            origin=origin,
            url=permalink,
            scope=(f"slack:{cid}",) if private else None,
            metadata={"channel": cid, "channel_name": name, "thread_ts": thread_ts, "messages": len(msgs)},
        )


def _author(msg: dict[str, Any], users: dict[str, str]) -> str:
    profile = msg.get("user_profile") or {}
    uid = str(msg.get("user") or msg.get("bot_id") or "unknown")
    return str(users.get(uid) or profile.get("display_name") or profile.get("real_name") or msg.get("username") or uid)


def _when(ts: Any) -> str:
    return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%d %H:%M")


def _clean(text: str, users: dict[str, str]) -> str:
    text = _USER.sub(lambda m: "@" + (m.group(2) or users.get(m.group(1), m.group(1))), text)
    text = _CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text)
    text = _SPECIAL.sub(lambda m: "@" + m.group(1), text)
    return html.unescape(text)
