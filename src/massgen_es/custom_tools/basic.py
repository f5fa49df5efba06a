"""Our equivalents of MassGen's basic bundled tools (``massgen/tool/_basic/_two_num_tool.py``).

This file is shipped to the agent's sandbox as text and run there by the executor, like a user's tool
file: it uses the standard library only and never imports ``massgen_es``.
"""

from __future__ import annotations


async def two_num_tool(x: int, y: int) -> str:
    """Add two numbers together.

    Args:
        x: First number
        y: Second number
    """
    return f"The sum of {x} and {y} is {x + y}"


async def wrong_two_num_tool(x: int, y: int) -> str:
    """Add two numbers together (MassGen's deliberately broken example: every call fails).

    Args:
        x: First number
        y: Second number
    """
    # MassGen's `*_wrong_custom_tool_*` example configs name this function to show what an agent does
    # when its custom tool is broken: here the model gets the failure as the tool's error and goes on.
    raise RuntimeError(
        f"wrong_two_num_tool is a deliberately broken example tool and cannot add {x} and {y}; "
        "answer without it"
    )
