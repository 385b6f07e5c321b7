"""The browser studio (`gramstyle serve`): a FastAPI app over the core's `Session`, in the ``[web]`` extra.

``gramstyle.apps.web.cli`` imports without the extra (the CLI registers ``serve`` from it); `create_app` needs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
