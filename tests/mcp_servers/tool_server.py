"""A small stdio MCP server for the broker tests, built on the official SDK's ``MCPServer``.

Tools: ``echo``, ``send_message`` (its name says irreversible),
``slow`` (sleeps), ``env`` (prints an env var), ``environ`` (the whole environment, also
printed on stderr), ``crash`` (kills the process),
``grow`` (registers a new tool and sends ``notifications/tools/list_changed``).
Each start appends the pid to ``$TOOL_SERVER_STARTS`` and each call's name to ``$TOOL_SERVER_CALLS``,
so tests can count processes and calls.
"""

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("tool-server")


def _note(var: str, text: str) -> None:
    path = os.environ.get(var)
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    _note("TOOL_SERVER_CALLS", "echo")
    return f"echo: {text}"


@server.tool()
def send_message(text: str) -> str:
    """Send a message (the world sees it: an irreversible effect, noted with its text)."""
    _note("TOOL_SERVER_CALLS", f"send_message:{text}")
    return f"sent: {text}"


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    _note("TOOL_SERVER_CALLS", "slow")
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def env(name: str) -> str:
    """The value of an environment variable."""
    return os.environ.get(name, "<unset>")


@server.tool()
def environ() -> str:
    """The whole environment, one ``NAME=value`` a line; also printed on stderr."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))
    print(text, file=sys.stderr, flush=True)
    return text


@server.tool()
def crash() -> str:
    """Exit the server process at once."""
    os._exit(3)


@server.tool()
async def grow(ctx: Context) -> str:
    """Register a tool named ``extra`` and tell the client the list changed."""

    def extra() -> str:
        """Added at run time."""
        return "extra"

    server.add_tool(extra, name="extra")
    await ctx.request_context.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    _note("TOOL_SERVER_STARTS", str(os.getpid()))
    server.run("stdio")
