"""`gramstyle serve`: the browser studio on this machine (loopback by default; any other address needs the token
this prints)."""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="the browser studio: upload, paint, watch, cancel, keep what you like")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind [default: 127.0.0.1, this machine only]; any other address needs the "
                        "printed token")
    p.add_argument("--port", type=int, default=8765, help="port [default: 8765]")
    p.add_argument("--open", action="store_true", help="open the studio in the default browser")
    p.add_argument("--workdir", default=None, metavar="DIR",
                   help="folder of the jobs and their results [default: ./gramstyle-studio]")
    p.add_argument("--queue", type=int, default=4, metavar="N",
                   help="jobs waiting at most; more are refused with 429 [default: 4]")
    p.add_argument("--max-upload-mb", type=float, default=50, metavar="N",
                   help="largest request (all images of a job) in MB [default: 50]")


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        sys.stderr.write(f"gramstyle: error: the studio needs the web extra: pip install 'gramstyle[web]' "
                         f"({exc.name} is missing)\n")
        return 2
    if args.queue < 1 or args.port < 0 or args.max_upload_mb <= 0:
        sys.stderr.write("gramstyle: error: --queue and --max-upload-mb must be positive, --port at least 0\n")
        return 2
    token = None
    host = args.host
    if host not in LOOPBACK:
        token = secrets.token_urlsafe(24)
        sys.stderr.write(f"gramstyle: warning: serving on {host}, reachable from other machines; every request "
                         "needs the token in the address below (keep it secret)\n")
    workdir = Path(args.workdir or "gramstyle-studio")
    app = create_app(workdir, queue=args.queue, max_upload_mb=args.max_upload_mb, token=token, host=host)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    sys.stderr.write(f"gramstyle studio: {url} (work folder {workdir}; Ctrl-C stops)\n")
    if args.open:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host, port=args.port, log_level="warning")
    return 0
