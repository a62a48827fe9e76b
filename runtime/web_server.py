"""A local static server for the web runtime: the package, its demo page and a folder of exports.

``mobilevision serve-demo exports/`` and the browser tests use it. Browsers refuse ``fetch`` on
``file://`` pages, and onnxruntime-web only runs WASM with several threads on a cross-origin isolated
page (``SharedArrayBuffer``), so every response carries COOP/COEP. Read-only: GET and HEAD, files
under the mounted folders only (no listing, no ``..``, no symlink out). Torch-free.
"""
from __future__ import annotations

import json
import mimetypes
import posixpath
import threading
import urllib.parse
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mobilevision.errors import MobileVisionError

WEB = Path(__file__).resolve().parent / "web"
ORT_DIST = WEB / "node_modules" / "onnxruntime-web" / "dist"
LITERT = WEB / "node_modules" / "@litertjs"     # LiteRT.js: core (dist + wasm) and wasm-utils
# artifacts the page can open: ONNX in onnxruntime-web, .tflite in LiteRT.js
MODEL_SUFFIXES = (".onnx", ".tflite")
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".html": "text/html; charset=utf-8", ".css": "text/css",
         ".onnx": "application/octet-stream", ".tflite": "application/octet-stream", ".png": "image/png",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".map": "application/json"}


def package_mounts(**more: Path) -> dict[str, Path]:
    """The package (/src), its tests (/test), onnxruntime-web (/ort) and LiteRT.js (/litert); ``more``:
    further prefixes (``golden=folder`` mounts /golden/)."""
    if not (ORT_DIST / "ort.all.min.mjs").is_file() or not (LITERT / "core" / "wasm").is_dir():
        raise MobileVisionError(f"onnxruntime-web or LiteRT.js is not installed under {WEB / 'node_modules'}: "
                                "run `bash runtime/web/tools/setup.sh` (npm ci) first")
    return {"/src/": WEB / "src", "/test/": WEB / "test", "/ort/": ORT_DIST, "/litert/": LITERT,
            **{f"/{k}/": Path(v) for k, v in more.items()}}


def default_mounts(models: Path | None) -> dict[str, Path]:
    """URL prefix -> folder: the package (/src), its demo (/demo), onnxruntime-web (/ort), LiteRT.js (/litert)
    and the models."""
    mounts = {**package_mounts(), "/demo/": WEB / "demo"}
    if models is not None:
        if not models.is_dir():
            raise MobileVisionError(f"{models} is not a folder: give the folder `mobilevision export` wrote")
        mounts["/models/"] = models
    return mounts


def model_index(folder: Path) -> list[dict[str, object]]:
    """The artifacts the page can open, with their sidecar when there is one."""
    rows = []
    for p in sorted(folder.rglob("*")):
        if p.suffix in MODEL_SUFFIXES and p.is_file():
            rel = p.relative_to(folder).as_posix()
            sidecar = p.with_name(p.name + ".json")
            rows.append({"name": rel, "url": "/models/" + urllib.parse.quote(rel), "bytes": p.stat().st_size,
                         "sidecar": "/models/" + urllib.parse.quote(rel + ".json") if sidecar.is_file() else None})
    return rows


class _Handler(BaseHTTPRequestHandler):
    server_version = "mobilevision"

    def __init__(self, *args, mounts: dict[str, Path], quiet: bool, **kwargs):
        self.mounts, self.quiet = mounts, quiet
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):   # noqa: A002 (the base class's name)
        if not self.quiet:
            super().log_message(format, *args)

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _resolve(self, url_path: str) -> Path | None:
        path = posixpath.normpath(urllib.parse.unquote(url_path))
        if url_path.endswith("/") and not path.endswith("/"):
            path += "/"
        for prefix, root in self.mounts.items():
            if path.startswith(prefix) or path + "/" == prefix:
                target = (root / path[len(prefix):]).resolve()
                root = root.resolve()
                if target != root and root not in target.parents:
                    return None
                return target / "index.html" if target.is_dir() else target
        return None

    def _send(self, status: int, body: bytes, ctype: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _get(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/", ""):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/demo/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/models/index.json" and "/models/" in self.mounts:
            body = json.dumps(model_index(self.mounts["/models/"])).encode()
            return self._send(200, body, "application/json", head)
        target = self._resolve(url.path)
        if target is None or not target.is_file():
            return self._send(404, b"not found\n", "text/plain", head)
        body = target.read_bytes()
        ctype = TYPES.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(200, body, ctype, head)

    def do_GET(self):   # noqa: N802 (http.server's names)
        self._get(head=False)

    def do_HEAD(self):   # noqa: N802
        self._get(head=True)


class WebServer:
    """A ThreadingHTTPServer on ``host:port`` (0: any free port) serving ``mounts``; a context manager."""

    def __init__(self, mounts: dict[str, Path], host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        handler = partial(_Handler, mounts={k: Path(v) for k, v in mounts.items()}, quiet=quiet)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise MobileVisionError(f"cannot listen on {host}:{port} ({e.strerror or e}): "
                                    "pick another --port") from e
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown() if self._thread else None
        self.httpd.server_close()

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
