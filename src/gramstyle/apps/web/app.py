"""The studio's HTTP API and page (the contract is docs/api.md): a thin adapter over `JobManager` and the core.

Safe by default: a request whose ``Host`` is not one of the server's own names is refused (DNS rebinding), as is
an unsafe method (POST, DELETE, ...) whose ``Origin`` is another site's; with a token (any bind address other than
loopback), every request must carry it (header ``X-Gramstyle-Token``, or the cookie a ``?token=`` URL sets).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ... import images as imageio
from ...errors import GramstyleError, ImageError, SettingsError, literal
from ...session import Session
from . import form
from .jobs import FINISHED, RECORD, RESULT, Job, JobManager, QueueFull, valid_id

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")
TOKEN_COOKIE = "gramstyle_token"
TOKEN_HEADER = "x-gramstyle-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def allowed_hosts(host: str) -> frozenset[str] | None:
    """The names a request's Host may carry for a server bound to `host` (None: any, the token guards)."""
    if host in WILDCARD:
        return None
    names = set(LOOPBACK) if host in LOOPBACK else set()
    names |= {host.lower(), socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


def _hostname(netloc: str) -> str:
    """'[::1]:8765' -> '::1', 'Example.org:80' -> 'example.org'."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


class _TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: Host, Origin and token checks, and the upload limit (413 before reading the body when
    Content-Length is over it, and while reading when the body is longer than it said or did not say)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None, token: str | None, max_body: int) -> None:
        self.app, self.hosts, self.token, self.max_body = app, hosts, token, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        method = scope["method"]
        if self.hosts is not None and _hostname(host) not in self.hosts:
            await _error(send, 403, "this server does not answer to that host name (DNS rebinding protection)")
            return
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            await _error(send, 403, "requests from another site's page are refused")
            return
        if self.token is not None and not self._authorised(headers):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.pop("token", [""])[0]
            if method == "GET" and hmac.compare_digest(given.encode(), self.token.encode()):
                location = scope.get("path", "/") + ("?" + urlencode(query, doseq=True) if query else "")
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                await _send(send, 303, b"", [(b"location", location.encode()), (b"set-cookie", cookie.encode())])
                return
            await _error(send, 401, "this server needs its token: open the address that gramstyle serve printed")
            return
        if method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _error(send, 413, self._too_large())
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _error(send, 413, self._too_large())

    def _authorised(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        given = headers.get(TOKEN_HEADER, "")
        if not given and headers.get("authorization", "").startswith("Bearer "):
            given = headers["authorization"][7:]
        if not given:
            for part in headers.get("cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == TOKEN_COOKIE:
                    given = value
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _too_large(self) -> str:
        return f"the upload is larger than this server's limit of {self.max_body // 2**20} MB"


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "field": None}).encode()
    await _send(send, status, body, [(b"content-type", b"application/json"), (b"connection", b"close")])


def _bad(message: str, field: str | None, status: int = 400, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def _client_name(upload: UploadFile) -> str:
    """The client's file name, for messages and display only (never a path on the server)."""
    name = PureWindowsPath(PurePosixPath(upload.filename or "upload").name).name
    name = "".join(c for c in name if c.isprintable())[:80]
    return name or "upload"


def _store(source: UploadFile | Path, folder: Path, name: str, max_pixels: int, shown: str, field: str) -> None:
    """Copy an upload (or a bundled or earlier file) to `folder/name` and check it as the CLI checks its inputs;
    an ImageError names the client's file, never the server's path."""
    target = folder / name
    with open(target, "wb") as out:
        if isinstance(source, Path):
            with open(source, "rb") as original:
                shutil.copyfileobj(original, out)
        else:
            source.file.seek(0)
            shutil.copyfileobj(source.file, out)
    try:
        imageio.open_image(target, max_pixels)
    except ImageError as exc:
        raise ImageError(literal(shown) + exc.template[len(literal(target)):]
                         if exc.template.startswith(literal(target)) else exc.template, field=field) from None


def _job_of(job_id: str, request: Request) -> Job:
    manager: JobManager = request.app.state.jobs
    job = manager.get(job_id) if valid_id(job_id) else None
    if job is None:
        raise HTTPException(404, "no such job")
    return job


JobOf = Annotated[Job, Depends(_job_of)]


def create_app(workdir: str | Path, queue: int = 4, max_upload_mb: float = 50, token: str | None = None, *,
               host: str = "127.0.0.1", devices: tuple[str, ...] = ("auto",),
               session_factory: Callable[[], Session] = Session) -> FastAPI:
    """The studio for `workdir` (created if missing): its page, its API and its worker threads (started now,
    stopped when the app shuts down or `app.state.jobs.close()` is called)."""
    manager = JobManager(workdir, queue_size=queue, devices=devices, session_factory=session_factory)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(manager.close)

    app = FastAPI(title="gramstyle studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.jobs = manager
    app.add_middleware(Guard, hosts=allowed_hosts(host), token=token, max_body=int(max_upload_mb * 2**20))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _bad(str(exc.detail), None, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _bad("malformed request", None, 400)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/settings")
    async def settings_form() -> dict[str, Any]:
        return {**form.schema(), "max_upload_mb": max_upload_mb, "queue": queue}

    @app.get("/api/samples/{name}.jpg")
    async def sample(name: str) -> FileResponse:
        if name not in form.SAMPLES:
            raise HTTPException(404, "no such sample")
        return FileResponse(form.SAMPLES[name], media_type="image/jpeg")

    @app.post("/api/jobs", status_code=201)
    async def submit(request: Request) -> Response:
        data = await request.form(max_files=32, max_fields=64)
        try:
            text = data.get("settings") or "{}"
            if not isinstance(text, str):
                raise SettingsError("settings must be JSON text, not a file", field="settings")
            try:
                values = json.loads(text)
            except ValueError as exc:
                raise SettingsError(f"settings are not valid JSON ({literal(exc)})", field="settings") from None
            settings = form.settings_from(values)
        except SettingsError as exc:
            return _bad(exc.render(form.label), exc.field)
        earlier: Job | None = None
        continue_from = data.get("continue_from")
        if continue_from:
            earlier = manager.get(str(continue_from)) if valid_id(str(continue_from)) else None
            if earlier is None or not earlier.has_result:
                return _bad("there is no result to continue from (it may have been deleted)", "continue_from")
        job_id, folder = manager.new_folder()
        try:
            job = await run_in_threadpool(_job_inputs, data, settings, job_id, folder, earlier)
        except GramstyleError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return _bad(exc.render(form.label), exc.field)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        try:
            manager.submit(job)
        except QueueFull as full:
            return _bad(f"the queue is full; try again in {full.retry_after} s", None, 429,
                        {"Retry-After": str(full.retry_after)})
        return JSONResponse({"id": job.id}, status_code=201, headers={"Location": f"/api/jobs/{job.id}"})

    @app.get("/api/jobs")
    async def jobs() -> dict[str, Any]:
        return {"jobs": [job.public(plot=False) for job in manager.list()]}

    @app.get("/api/jobs/{job_id}")
    async def one(job: JobOf) -> dict[str, Any]:
        return job.public()

    @app.get("/api/jobs/{job_id}/events", response_class=EventSourceResponse)
    async def events(job: JobOf) -> AsyncIterator[ServerSentEvent]:
        last = -1
        while True:
            version = job.version
            if job.state in FINISHED or job.deleted:
                yield ServerSentEvent(data=job.public(), event="end", id=str(version))
                return
            if version != last:
                last = version
                yield ServerSentEvent(data=job.public(plot=False), event="progress", id=str(version))
            await asyncio.sleep(0.1)

    @app.get("/api/jobs/{job_id}/preview.jpg")
    async def preview(job: JobOf) -> Response:
        jpeg = await run_in_threadpool(manager.preview_jpeg, job)
        if jpeg is None:
            return _bad("no preview yet", None, 404)
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store", "X-Step": str(job.preview_step)})

    @app.get("/api/jobs/{job_id}/result.png")
    async def result(job: JobOf) -> FileResponse:
        if not job.has_result:
            raise HTTPException(404, "this job has no result")
        return FileResponse(job.folder / RESULT, media_type="image/png")

    @app.get("/api/jobs/{job_id}/record.json")
    async def record(job: JobOf) -> FileResponse:
        if not (job.folder / RECORD).is_file():
            raise HTTPException(404, "this job has no run record")
        return FileResponse(job.folder / RECORD, media_type="application/json")

    @app.post("/api/jobs/{job_id}/cancel")
    async def cancel(job: JobOf) -> dict[str, Any]:
        manager.cancel(job)
        return job.public(plot=False)

    @app.delete("/api/jobs/{job_id}", status_code=204)
    async def delete(job: JobOf) -> Response:
        await run_in_threadpool(manager.delete, job)
        return Response(status_code=204)

    return app


def _job_inputs(data: Any, settings: Any, job_id: str, folder: Path, earlier: Job | None) -> Job:
    """Store and check a submission's images; the job it describes."""
    max_pixels = settings.max_pixels
    content_upload = data.get("content")
    content_sample = data.get("content_sample")
    inputs: dict[str, Any] = {}
    if isinstance(content_upload, UploadFile):
        shown = _client_name(content_upload)
        _store(content_upload, folder, "content.image", max_pixels, shown, "content")
    elif content_sample:
        if content_sample not in form.SAMPLES:
            raise ImageError(f"no bundled image named {literal(repr(content_sample))}", field="content")
        shown = f"{content_sample} (sample)"
        _store(form.SAMPLES[content_sample], folder, "content.image", max_pixels, shown, "content")
    elif earlier is not None:
        shown = earlier.inputs.get("content", "content")
        _store(earlier.folder / earlier.content, folder, "content.image", max_pixels, shown, "content")
    else:
        raise ImageError("give a content image (the photo)", field="content")
    inputs["content"] = shown
    styles: list[str] = []
    shown_styles: list[str] = []
    uploads = [s for s in data.getlist("style") if isinstance(s, UploadFile)]
    samples = [str(s) for s in data.getlist("style_sample") if isinstance(s, str) and s]
    for upload in uploads:
        name = f"style-{len(styles)}.image"
        shown = _client_name(upload)
        _store(upload, folder, name, max_pixels, shown, "style")
        styles.append(name)
        shown_styles.append(shown)
    for sample_name in samples:
        if sample_name not in form.SAMPLES:
            raise ImageError(f"no bundled image named {literal(repr(sample_name))}", field="style")
        name = f"style-{len(styles)}.image"
        _store(form.SAMPLES[sample_name], folder, name, max_pixels, f"{sample_name} (sample)", "style")
        styles.append(name)
        shown_styles.append(f"{sample_name} (sample)")
    if not styles and earlier is not None:
        for index, style in enumerate(earlier.styles):
            name = f"style-{index}.image"
            shown = str(earlier.inputs.get("styles", [])[index:index + 1] and earlier.inputs["styles"][index])
            _store(earlier.folder / style, folder, name, max_pixels, shown, "style")
            styles.append(name)
            shown_styles.append(shown)
    if not styles:
        raise ImageError("give at least one style image (a painting)", field="style")
    inputs["styles"] = shown_styles
    if settings.style_blend is not None and len(settings.style_blend) != len(styles):
        raise SettingsError(f"{{style_blend}} has {len(settings.style_blend)} weights for {len(styles)} style "
                            "images", field="style_blend")
    if earlier is not None:
        _store(earlier.folder / RESULT, folder, "init.png", max_pixels, "the earlier result", "continue_from")
        settings = settings.replace(init=str(folder / "init.png")).validated()
        inputs["continue_from"] = earlier.id
    return Job(id=job_id, folder=folder, settings=settings.to_dict(), inputs=inputs, content="content.image",
               styles=styles)
