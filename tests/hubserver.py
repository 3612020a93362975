"""A loopback stand-in for the Hugging Face Hub's upload endpoints (standard library only).

Speaks what ``HfApi.create_repo``, ``create_branch`` and ``upload_folder`` use:

- ``POST /api/repos/create``                          create a repo (private flag kept)
- ``POST /api/models/{repo}/branch/{branch}``          create a branch from main
- ``POST /api/models/{repo}/preupload/{revision}``     "regular" below ``lfs_threshold`` bytes, else "lfs"
- ``POST /{repo}.git/info/lfs/objects/batch``          LFS batch API, basic transfer, upload + verify
- ``PUT  /lfs/{oid}?signature=``, ``POST /lfs/{oid}/verify``   the LFS object store (sha256 checked;
  the PUT is authorised by the URL, like a presigned S3 URL)
- ``POST /api/models/{repo}/commit/{revision}``        NDJSON commit: base64 ``file`` and ``lfsFile`` lines
- ``POST /api/validate-yaml``                          model-card metadata check (always fine)

Every other request must carry ``Authorization: Bearer <token>``; anything else is answered 401.
What arrived is kept in ``server.repos[repo_id]["branches"][branch][path] = bytes``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class HubState:
    def __init__(self, token: str, lfs_threshold: int) -> None:
        self.token = token
        self.lfs_threshold = lfs_threshold
        self.repos: dict[str, dict] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.secret = secrets.token_hex(8)  # LFS upload URLs are "presigned" (no Authorization, like S3)
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: "HubServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, value: object = None) -> None:
        raw = json.dumps(value if value is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server.state.token}"

    def _handle(self, method: str) -> None:
        state = self.server.state
        body = self._body()
        url = urlparse(self.path)
        path = unquote(url.path)
        with state.lock:
            state.requests.append((method, path))
        presigned = method == "PUT" and path.startswith("/lfs/") and url.query == f"signature={state.secret}"
        if not (presigned or self._authorised()):
            return self._send(401, {"error": "Invalid credentials in Authorization header"})
        try:
            status, value = self._route(method, path, body)
        except KeyError as exc:
            status, value = 404, {"error": f"not found: {exc}"}
        self._send(status, value)

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_GET(self) -> None:
        self._handle("GET")

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, path: str, body: bytes) -> tuple[int, object]:
        state, base = self.server.state, self.server.url
        if method == "POST" and path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
            with state.lock:
                if repo_id in state.repos:
                    return 409, {"error": "You already created this model repo", "url": f"{base}/{repo_id}"}
                state.repos[repo_id] = {"private": bool(request.get("private")) or request.get("visibility") == "private", "branches": {"main": {}}, "commits": []}
            return 200, {"url": f"{base}/{repo_id}", "name": repo_id}
        if method == "POST" and path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if path.startswith("/api/models/"):
            repo_id, action, revision = self._split(path[len("/api/models/"):])
            repo = state.repos[repo_id]
            if method == "POST" and action == "branch":
                if revision in repo["branches"]:
                    return 409, {"error": "Reference already exists"}
                repo["branches"][revision] = dict(repo["branches"]["main"])
                return 200, {}
            if method == "POST" and action == "preupload":
                files = json.loads(body)["files"]
                return 200, {"files": [{"path": f["path"], "shouldIgnore": False, "oid": None,
                                        "uploadMode": "lfs" if f["size"] > state.lfs_threshold else "regular"}
                                       for f in files]}
            if method == "POST" and action == "commit":
                return self._commit(repo_id, repo, revision, body)
        if method == "POST" and path.endswith(".git/info/lfs/objects/batch"):
            request = json.loads(body)
            return 200, {"transfer": "basic", "objects": [
                {"oid": o["oid"], "size": o["size"], "authenticated": True,
                 "actions": {"upload": {"href": f"{base}/lfs/{o['oid']}?signature={state.secret}"},
                             "verify": {"href": f"{base}/lfs/{o['oid']}/verify"}}}
                for o in request["objects"]]}
        if method == "PUT" and path.startswith("/lfs/"):
            oid = path[len("/lfs/"):]
            if hashlib.sha256(body).hexdigest() != oid:
                return 400, {"error": "sha256 mismatch"}
            with state.lock:
                state.lfs[oid] = body
            return 200, {}
        if method == "POST" and path.startswith("/lfs/") and path.endswith("/verify"):
            request = json.loads(body)
            stored = state.lfs.get(request["oid"])
            return (200, {}) if stored is not None and len(stored) == request["size"] else (404, {"error": "missing"})
        return 404, {"error": f"no route {method} {path}"}

    @staticmethod
    def _split(rest: str) -> tuple[str, str, str]:
        parts = rest.split("/")
        return "/".join(parts[:2]), parts[2], "/".join(parts[3:])

    def _commit(self, repo_id: str, repo: dict, revision: str, body: bytes) -> tuple[int, object]:
        state = self.server.state
        if revision not in repo["branches"]:
            return 404, {"error": f"Revision Not Found: {revision}"}
        files: dict[str, bytes] = {}
        header = None
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                header = value
            elif item["key"] == "file":
                assert value.get("encoding") == "base64"
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                data = state.lfs.get(value["oid"])
                if data is None or len(data) != value["size"]:
                    return 400, {"error": f"LFS object {value['oid']} was not uploaded"}
                files[value["path"]] = data
            else:
                return 400, {"error": f"unsupported commit line {item['key']!r}"}
        if header is None:
            return 400, {"error": "commit without header"}
        oid = hashlib.sha1(json.dumps(sorted(files)).encode() + str(len(repo["commits"])).encode()).hexdigest()
        with state.lock:
            repo["branches"][revision].update(files)
            repo["commits"].append({"oid": oid, "revision": revision, "summary": header.get("summary")})
        return 200, {"commitUrl": f"{self.server.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None}


class HubServer(ThreadingHTTPServer):
    """``with HubServer(token) as hub: ... hub.url ... hub.state.repos``"""

    daemon_threads = True

    def __init__(self, token: str, lfs_threshold: int = 4096) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = HubState(token, lfs_threshold)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
