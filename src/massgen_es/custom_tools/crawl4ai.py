"""Our equivalents of MassGen's crawl4ai tools (``massgen/tool/_web_tools/crawl4ai_tool.py``): clients of
a crawl4ai server's REST API (the ``unclecode/crawl4ai`` Docker image the user runs, default
``http://localhost:11235``; ``CRAWL4AI_BASE_URL`` in the executor's environment points elsewhere).

Same functions, parameters and results as MassGen's: each returns a JSON text with ``success`` and the
endpoint's data, or ``success: false`` and the error; every call first checks the server (``GET /health``).
Endpoints: ``POST /md {url, f, q}``, ``/html {url}``, ``/screenshot {url, screenshot_wait_for}``,
``/pdf {url}``, ``/execute_js {url, scripts}``, ``/crawl {urls}``.

This file is shipped to the agent's sandbox as text and run there by the executor, like a user's tool
file: it uses the standard library only and never imports ``massgen_es``. It needs the network
(``massgen_es.custom_tools`` gives it the host's in local mode).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 60.0


def _base() -> str:
    return (os.environ.get("CRAWL4AI_BASE_URL") or "http://localhost:11235").rstrip("/")


def _request(method: str, url: str, body: dict[str, Any] | None, timeout: float) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) URLs only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def _post(path: str, body: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    status, raw = await asyncio.to_thread(_request, "POST", _base() + path, body, timeout)
    if status >= 400:
        detail = raw[:300].decode("utf-8", "replace")
        raise RuntimeError(f"HTTP error {status} from the crawl4ai server ({path}): {detail}")
    found = json.loads(raw)
    return found if isinstance(found, dict) else {"results": found}


def _out(**fields: Any) -> str:
    return json.dumps(fields, indent=2)


async def _server_error() -> str | None:
    """None when the crawl4ai server answers its health check, else the result to return."""
    base = _base()
    try:
        status, _ = await asyncio.to_thread(_request, "GET", base + "/health", None, 5.0)
    except (OSError, ValueError) as exc:
        return _out(success=False, error="crawl4ai server not reachable", details=(
            f"no crawl4ai server answers at {base} ({exc}); start one with "
            "`docker run -d -p 11235:11235 --name crawl4ai --shm-size=1g unclecode/crawl4ai:latest`, "
            "or set CRAWL4AI_BASE_URL for the executor"))
    if status != 200:
        return _out(success=False, error="crawl4ai server not healthy",
                    details=f"crawl4ai health check at {base}/health answered {status}")
    return None


def _bad_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"URL must use http or https protocol, got: {parts.scheme or 'none'}"
    return None if parts.netloc else "URL must have a valid domain"


def _save(data: bytes, output_filename: str, agent_cwd: str | None) -> Path:
    target = Path(agent_cwd or Path.cwd()) / output_filename
    target.write_bytes(data)
    return target


async def crawl4ai_md(url: str, filter_type: str = "fit", query: str | None = None) -> str:
    """Extract clean markdown text content from a webpage.

    PRIMARY TOOL for reading and understanding website content: articles, documentation, blog posts.
    Do not use screenshot tools for reading content - use this tool instead.

    Args:
        url: The webpage URL to scrape (must be absolute http/https URL)
        filter_type: Content filter strategy - "fit" (smart filtering, default), "raw" (no filtering),
            "bm25" (keyword-based), "llm" (AI-powered)
        query: Query string for BM25/LLM filters (optional)
    """
    down = await _server_error()
    if down:
        return down
    bad = _bad_url(url)
    if bad:
        return _out(success=False, error=f"Invalid URL: {bad}", url=url)
    try:
        status, _ = await asyncio.to_thread(_request, "HEAD", url, None, 10.0)
    except (OSError, ValueError) as exc:
        return _out(success=False, error=f"URL not accessible: could not connect ({exc})", url=url, status_code=0)
    if status >= 400:
        return _out(success=False, error=f"URL not accessible: URL returned error status {status}", url=url,
                    status_code=status)
    try:
        data = await _post("/md", {"url": url, "f": filter_type, "q": query})
    except Exception as exc:  # noqa: BLE001 - the model gets every failure as the tool's result
        return _out(success=False, error=f"Failed to scrape URL: {exc}", url=url)
    if not data.get("success"):
        return _out(success=False, error="Crawl failed", url=url)
    return _out(success=True, url=data.get("url"), markdown=data.get("markdown"), filter=data.get("filter"))


async def crawl4ai_html(url: str) -> str:
    """Extract preprocessed HTML from a webpage (scripts and styles removed), for building schemas or
    parsing structured data.

    Args:
        url: The webpage URL to scrape
    """
    down = await _server_error()
    if down:
        return down
    try:
        data = await _post("/html", {"url": url})
    except Exception as exc:  # noqa: BLE001
        return _out(success=False, error=str(exc), url=url)
    return _out(success=True, url=url, html=data.get("html", ""))


async def crawl4ai_screenshot(url: str, wait_seconds: float = 2.0, output_filename: str | None = None,
                              agent_cwd: str | None = None) -> str:
    """Capture a full-page PNG screenshot of a webpage after waiting for it to load; saved to the
    workspace when a filename is given.

    Args:
        url: The webpage URL to screenshot
        wait_seconds: Seconds to wait before capturing (default: 2.0)
        output_filename: Optional filename to save in workspace (e.g., "screenshot.png")
        agent_cwd: Agent's workspace directory (given by the executor, not by the model)
    """
    down = await _server_error()
    if down:
        return down
    try:
        data = await _post("/screenshot", {"url": url, "screenshot_wait_for": wait_seconds})
        shot = data.get("screenshot")
        if not shot:
            return _out(success=False, error="No screenshot returned", url=url)
        if output_filename:
            saved = _save(base64.b64decode(shot), output_filename, agent_cwd)
            return _out(success=True, url=url, saved_to=str(saved), filename=output_filename)
        return _out(success=True, url=url, screenshot_base64=shot[:100] + "...",
                    note="Provide output_filename parameter to save to workspace")
    except Exception as exc:  # noqa: BLE001
        return _out(success=False, error=str(exc), url=url)


async def crawl4ai_pdf(url: str, output_filename: str | None = None, agent_cwd: str | None = None) -> str:
    """Generate a PDF of the rendered webpage; saved to the workspace when a filename is given.

    Args:
        url: The webpage URL to convert to PDF
        output_filename: Optional filename to save in workspace (e.g., "page.pdf")
        agent_cwd: Agent's workspace directory (given by the executor, not by the model)
    """
    down = await _server_error()
    if down:
        return down
    try:
        data = await _post("/pdf", {"url": url})
        pdf = data.get("pdf")
        if not pdf:
            return _out(success=False, error="No PDF returned", url=url)
        raw = base64.b64decode(pdf)
        if output_filename:
            saved = _save(raw, output_filename, agent_cwd)
            return _out(success=True, url=url, saved_to=str(saved), filename=output_filename)
        return _out(success=True, url=url, pdf_size_bytes=len(raw),
                    note="Provide output_filename parameter to save to workspace")
    except Exception as exc:  # noqa: BLE001
        return _out(success=False, error=str(exc), url=url)


async def crawl4ai_execute_js(url: str, scripts: list[str]) -> str:
    """Execute JavaScript snippets on a webpage, in order, and return their results with the page's
    markdown and links. Each script is an expression that returns a value (an IIFE or async function).

    Args:
        url: The webpage URL to execute scripts on
        scripts: List of JavaScript code snippets to execute in order
    """
    down = await _server_error()
    if down:
        return down
    try:
        data = await _post("/execute_js", {"url": url, "scripts": scripts})
    except Exception as exc:  # noqa: BLE001
        return _out(success=False, error=str(exc), url=url)
    return _out(success=data.get("success", True), url=data.get("url"), markdown=data.get("markdown"),
                js_execution_result=data.get("js_execution_result"), links=data.get("links"))


async def crawl4ai_crawl(urls: list[str], max_urls: int = 100) -> str:
    """Crawl several URLs in parallel (at most 100 per call) and return the results for all of them.

    Args:
        urls: List of URLs to crawl (max 100)
        max_urls: Maximum number of URLs to process (default: 100)
    """
    down = await _server_error()
    if down:
        return down
    chosen = urls[: min(len(urls), max_urls, 100)]
    try:
        data = await _post("/crawl", {"urls": chosen}, timeout=DEFAULT_TIMEOUT * 3)
    except Exception as exc:  # noqa: BLE001
        return _out(success=False, error=str(exc), urls=urls[:5])
    return _out(success=True, total_urls=len(chosen), results=data.get("results", []))
