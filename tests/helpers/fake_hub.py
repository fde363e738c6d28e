"""A stand-in Hugging Face Hub on 127.0.0.1 for push/download tests (the real Hub is unreachable here).

It implements the endpoints ``huggingface_hub`` calls for ``create_repo`` + ``upload_folder`` (repo creation,
README probe, YAML validation, pre-upload, NDJSON commit with inline base64 files) and for
``from_pretrained(repo_id)`` / ``snapshot_download`` (model info with a commit sha, the file tree, file resolution with
ETag/commit headers).
It only listens on loopback and stops when the context manager exits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class FakeHubState:
    """Repositories as {repo_id: {"sha": str, "files": {path: bytes}}}."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()


def _handler(state: FakeHubState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _not_found(self, code: str = "RepoNotFound") -> None:
            self._json({"error": code}, status=404, headers={"X-Error-Code": code})

        def _route(self) -> None:
            path = unquote(urlparse(self.path).path)
            state.requests.append((self.command, path))
            if self.command == "POST" and path == "/api/repos/create":
                request = json.loads(self._body() or b"{}")
                repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
                with state.lock:
                    state.repos.setdefault(repo_id, {"sha": hashlib.sha1(repo_id.encode()).hexdigest(), "files": {}})
                return self._json({"url": f"http://127.0.0.1/{repo_id}", "name": repo_id, "id": repo_id})
            if self.command == "POST" and path == "/api/validate-yaml":
                self._body()
                return self._json({"warnings": [], "errors": []})
            match = re.match(r"^/api/models/(.+?)/preupload/([^/]+)$", path)
            if self.command == "POST" and match:
                request = json.loads(self._body() or b"{}")
                files = [{"path": item["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                         for item in request.get("files", [])]
                return self._json({"files": files, "commitOid": state.repos.get(match.group(1), {}).get("sha")})
            match = re.match(r"^/api/models/(.+?)/commit/([^/]+)$", path)
            if self.command == "POST" and match:
                repo = state.repos.get(match.group(1))
                if repo is None:
                    return self._not_found()
                for line in self._body().decode().splitlines():
                    if not line.strip():
                        continue
                    entry = json.loads(line)
                    if entry.get("key") == "file":
                        value = entry["value"]
                        repo["files"][value["path"]] = base64.b64decode(value["content"])
                    elif entry.get("key") == "deletedFile":
                        repo["files"].pop(entry["value"]["path"], None)
                digest = hashlib.sha1()
                for name in sorted(repo["files"]):
                    digest.update(name.encode() + repo["files"][name])
                repo["sha"] = digest.hexdigest()
                return self._json({"commitUrl": f"http://127.0.0.1/{match.group(1)}/commit/{repo['sha']}",
                                   "commitOid": repo["sha"], "pullRequestUrl": None})
            match = re.match(r"^/api/models/(.+?)/tree/([^/]+)$", path)
            if self.command == "GET" and match and match.group(1) in state.repos:  # snapshot_download's file listing
                files = state.repos[match.group(1)]["files"]
                return self._json([{"type": "file", "path": name, "size": len(content),
                                    "oid": hashlib.sha1(content).hexdigest()} for name, content in sorted(files.items())])
            match = re.match(r"^/api/models/(.+?)(?:/revision/([^/]+))?$", path)
            if self.command == "GET" and match and match.group(1) in state.repos:
                repo = state.repos[match.group(1)]
                return self._json({"id": match.group(1), "modelId": match.group(1), "sha": repo["sha"],
                                   "siblings": [{"rfilename": name} for name in sorted(repo["files"])],
                                   "private": False, "tags": []})
            match = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", path)
            if self.command in ("GET", "HEAD") and match:
                repo = state.repos.get(match.group(1))
                if repo is None:
                    return self._not_found()
                content = repo["files"].get(match.group(3))
                if content is None:
                    return self._not_found("EntryNotFound")
                self.send_response(200)
                self.send_header("Content-Length", str(len(content)))
                self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
                self.send_header("X-Repo-Commit", repo["sha"])
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(content)
                return None
            return self._not_found()

        do_GET = do_POST = do_HEAD = do_PUT = _route

    return Handler


@contextmanager
def fake_hub():
    """Serve a fresh fake Hub on an ephemeral loopback port; yields (endpoint URL, state)."""
    state = FakeHubState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
