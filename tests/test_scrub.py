"""Secrets scrubbed where everything passes (issue 13 item 1): the encoder every event goes through,
the Object Store, log lines, and a child process's stderr."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from massgen_es import scrub
from massgen_es.events import AgentDropped, Failure, Source, TurnFailed, decode, encode

KEY = "sk-proj-Abc123def456ghi789jkl012"
ANTHROPIC = "sk-ant-api03-AAAAbbbbCCCCddddEEEE"
GOOGLE = "AIzaSyA1234567890abcdefghijklmnopqrs"
ODD = 'pa"ss\\word-of-a-custom-store'  # needs JSON escaping; no credential shape


@pytest.mark.parametrize("raw", [
    f"Incorrect API key provided: {KEY}.",
    f"invalid x-api-key {ANTHROPIC}",
    f"API key not valid: {GOOGLE}",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abcdef",
    "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==",
    "https://host/v1?api_key=qwertyuiop123&x=1",
    '{"error": {"password": "hunter2hunter2"}}',
    "connecting to nats://executor:s3cr3t-pw@nats:4222 failed",
])
def test_credential_shapes_are_replaced_by_the_marker(raw: str) -> None:
    out = scrub.Scrubber().text(raw)
    assert scrub.MARKER in out
    for secret in (KEY, ANTHROPIC, GOOGLE, "eyJhbGciOiJIUzI1NiJ9", "ghp_abc", "qwertyuiop123", "hunter2hunter2",
                   "s3cr3t-pw"):
        assert secret not in out


@pytest.mark.parametrize("prose", [
    "Token generation is slow; a bearer instrument; basic arithmetic; the api_key: required field",
    "password = the one you chose",
    "sk-learn is a library",
    "the multitask-queue-with-a-long-name-1234567 runs",  # "sk-" inside a word is no key
    "see https://example.com/a:b/c and mailto:x@y.z",
])
def test_prose_that_merely_mentions_credentials_is_left_alone(prose: str) -> None:
    assert scrub.Scrubber().text(prose) == prose


def test_remembered_values_are_replaced_in_text_and_in_json_bytes_which_stay_valid() -> None:
    s = scrub.Scrubber()
    s.remember([ODD, "short"])  # "short" is under MIN_SECRET_CHARS: never remembered
    assert s.text(f"value={ODD}!") == f"value={scrub.MARKER}!"
    doc = json.dumps({"msg": f"server said {ODD}", "nested": f'{{"k": "{ODD}"}}', "keep": "short"}).encode()
    out = s.data(doc)
    parsed = json.loads(out)  # still valid JSON
    assert ODD not in json.dumps(parsed) and parsed["keep"] == "short"
    assert parsed["msg"] == f"server said {scrub.MARKER}"


def test_every_event_is_scrubbed_by_the_encoder_the_append_path_uses() -> None:
    """A provider's 401 body echoing the bearer token, in turn.failed and agent.dropped."""
    scrub.remember([ODD])
    body = f'401 {{"error": {{"message": "Incorrect API key provided: {KEY}", "auth": "Bearer {ODD}"}}}}'
    failure = Failure(type="ProviderAuthError", message=body, cause=Failure(type="HTTPStatusError", message=body))
    for event in (TurnFailed(turn_id="t1", agent_id="a", attempt=1, failure=failure),
                  AgentDropped(agent_id="a", reason=f"2 failed turns; last: {body}", failed_turns=2)):
        data = encode(event, id="e1", run_id="r1", ts=1.0, source=Source(service="agent_worker", instance="i"))
        assert KEY.encode() not in data and scrub.MARKER.encode() in data
        decode(data)  # a valid envelope still
        assert not any(ODD in text or KEY in text for text in _strings(json.loads(data)))


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_environment_credentials_are_known_to_a_fresh_process() -> None:
    """A key in a variable named like one is scrubbed even where it has no credential shape."""
    code = ("from massgen_es import scrub; import logging, sys; logging.basicConfig(stream=sys.stdout);"
            "scrub.guard_logging(); logging.getLogger('x').warning('calling with %s', 'plainvalue12345')")
    env = {"PATH": "/usr/bin:/bin", "MY_SERVICE_TOKEN": "plainvalue12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "plainvalue12345" not in out and f"calling with {scrub.MARKER}" in out


def test_log_lines_and_tracebacks_are_scrubbed_by_the_guarded_handler(tmp_path: Path) -> None:
    logger = logging.getLogger("test-scrub-logger")
    handler = logging.FileHandler(tmp_path / "service.log")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        scrub.guard_logging(logger)
        try:
            raise RuntimeError(f"upstream refused {KEY}")
        except RuntimeError:
            logger.exception("call failed with key %s", KEY)
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "service.log").read_text()
    assert KEY not in text and text.count(scrub.MARKER) == 2 and "RuntimeError" in text


def test_a_child_process_stderr_reaches_its_log_file_scrubbed(tmp_path: Path) -> None:
    """What the MCP broker does with a server's stderr: a server printing its environment."""
    scrub.remember(["mcp-header-value-42"])
    log = tmp_path / "mcp_stderr.log"
    with scrub.scrubbed_pipe(log) as errlog:
        subprocess.run([sys.executable, "-c", "import os, sys; print(dict(os.environ), file=sys.stderr)"],
                       stderr=errlog, env={"DB_PASSWORD": "mcp-header-value-42", "OPENAI_API_KEY": KEY}, check=True)
    text = log.read_text()
    assert "DB_PASSWORD" in text and "mcp-header-value-42" not in text and KEY not in text
