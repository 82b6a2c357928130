"""A loopback stand-in for the Slack Web API: a real HTTP server on 127.0.0.1 in a thread.

It records every call (method, params, JSON body), keeps posted messages per channel (with
metadata, so conversations.history can be searched), and can be told to fail the next N calls
with 429 + Retry-After, a 5xx, an `{"ok": false, "error": ...}` answer, or a dropped connection
after the call took effect (the "posted, but the client never heard back" case). It can also
answer slowly (`delay`), to show that nothing waits on it while answering Slack.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse


@dataclass
class Call:
    method: str
    params: dict
    json: dict | None
    headers: dict

    def arg(self, name: str, default=None):
        if self.json is not None and name in self.json:
            return self.json[name]
        return self.params.get(name, default)


@dataclass
class _Failure:
    kind: str  # status | error | drop
    remaining: int
    method: str | None
    status: int = 500
    error: str = ""
    retry_after: int | None = None


@dataclass
class SlackStandin:
    users: dict[str, str] = field(default_factory=dict)  # email -> user id
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, list[dict]] = field(default_factory=dict)  # channel -> messages
    delay: float = 0.0  # seconds to sleep before answering any call (recorded on arrival)
    scopes: str | None = None  # when set, auth.test answers with this X-OAuth-Scopes header

    def __post_init__(self):
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # --- control -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def fail_next(self, n: int = 1, *, status: int = 500, retry_after: int | None = None, method: str | None = None):
        """Answer the next `n` calls (of `method`, or any) with an HTTP error status."""
        self._failures.append(_Failure("status", n, method, status=status, retry_after=retry_after))

    def error_next(self, n: int = 1, *, error: str, method: str | None = None):
        """Answer the next `n` calls with HTTP 200 `{"ok": false, "error": error}`."""
        self._failures.append(_Failure("error", n, method, error=error))

    def drop_after_next(self, n: int = 1, *, method: str):
        """Carry out the next `n` calls of `method` but close the connection without answering."""
        self._failures.append(_Failure("drop", n, method))

    def reset(self) -> None:
        """Forget every call, message and pending failure (a long-lived stand-in between tests)."""
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self._failures.clear()

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def posted(self, channel: str | None = None) -> list[dict]:
        if channel is not None:
            return list(self.messages.get(channel, []))
        return [m for msgs in self.messages.values() for m in msgs]

    def start(self) -> SlackStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                standin._handle(self)

            def do_POST(self):
                standin._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- serving -------------------------------------------------------------------------------
    def _take_failure(self, method: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and failure.method in (None, method):
                    failure.remaining -= 1
                    return failure
        return None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length).decode("utf-8") if length else ""
        params = dict(parse_qsl(parsed.query))
        body_json = None
        if "json" in (request.headers.get("Content-Type") or ""):
            body_json = json.loads(raw or "{}")
        elif raw:
            params.update(dict(parse_qsl(raw)))
        method = parsed.path.split("/api/", 1)[1] if "/api/" in parsed.path else parsed.path
        call = Call(method=method, params=params, json=body_json, headers=dict(request.headers))
        with self._lock:
            self.calls.append(call)
        if self.delay:
            time.sleep(self.delay)
        failure = self._take_failure(method)
        if failure is not None and failure.kind == "status":
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            error = "ratelimited" if failure.status == 429 else "internal_error"
            self._send(request, failure.status, {"ok": False, "error": error}, headers)
            return
        if failure is not None and failure.kind == "error":
            self._send(request, 200, {"ok": False, "error": failure.error})
            return
        answer = self._answer(call)
        if failure is not None and failure.kind == "drop":
            request.close_connection = True
            request.connection.shutdown(2)  # the call took effect; the client never hears back
            return
        headers = {"X-OAuth-Scopes": self.scopes} if method == "auth.test" and self.scopes is not None else {}
        self._send(request, 200, answer, headers)

    def _answer(self, call: Call) -> dict:
        method = call.method
        if method == "auth.test":
            return {"ok": True, "user": "churnbot", "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "team": "Shop", "url": "https://shop.slack.com/"}
        if method == "users.lookupByEmail":
            email = call.arg("email", "")
            if email.lower() in self.users:
                return {"ok": True, "user": {"id": self.users[email.lower()], "profile": {"email": email}}}
            return {"ok": False, "error": "users_not_found"}
        if method == "users.info":
            user = call.arg("user", "")
            emails = {uid: email for email, uid in self.users.items()}
            if user in emails:
                return {"ok": True, "user": {"id": user, "profile": {"email": emails[user]}}}
            return {"ok": False, "error": "user_not_found"}
        if method == "conversations.open":
            user = str(call.arg("users", "")).split(",")[0]
            return {"ok": True, "channel": {"id": "D" + user[1:]}}
        if method == "chat.postMessage":
            channel = call.arg("channel")
            if channel.startswith("U"):
                channel = "D" + channel[1:]
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            metadata = call.arg("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            message = {"type": "message", "ts": ts, "text": call.arg("text"), "blocks": call.arg("blocks"),
                       "metadata": metadata}
            with self._lock:
                self.messages.setdefault(channel, []).append(message)
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            channel, ts = call.arg("channel"), call.arg("ts")
            for message in self.messages.get(channel, []):
                if message["ts"] == ts:
                    message.update(text=call.arg("text"), blocks=call.arg("blocks"))
                    return {"ok": True, "channel": channel, "ts": ts}
            return {"ok": False, "error": "message_not_found"}
        if method == "conversations.history":
            channel = call.arg("channel")
            oldest = float(call.arg("oldest") or 0)
            messages = [m for m in self.messages.get(channel, []) if float(m["ts"]) >= oldest]
            include_metadata = str(call.arg("include_all_metadata", "")).lower() in {"1", "true"}
            out = [m if include_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in reversed(messages)]
            return {"ok": True, "messages": out, "has_more": False}
        if method in {"views.open", "chat.postEphemeral"}:
            return {"ok": True}
        # Anything else (a response_url) answers like Slack's webhooks do.
        return {"ok": True}

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(data)
