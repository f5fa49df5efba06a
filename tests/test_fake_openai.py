"""Tests for massgen_es.testing.fake_openai, driven through the real openai SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

try:
    from massgen_es.testing.fake_openai import AZURE_API_KEY, FakeOpenAI, Reply, team_member
except ImportError:  # package not installed into the venv: import from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from massgen_es.testing.fake_openai import AZURE_API_KEY, FakeOpenAI, Reply, team_member

MSGS: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "say hello please"},
]


@pytest.fixture
def fake():
    with FakeOpenAI() as f:
        yield f


@pytest.fixture
def client(fake):
    return openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=5)


def test_non_streaming_text(fake, client):
    fake.script("m", Reply(text="hello there"))
    r = client.chat.completions.create(model="m", messages=MSGS)
    assert r.choices[0].message.content == "hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls is None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 2, 7)


def test_streaming_text_many_deltas_with_usage(fake, client):
    text = "The quick brown fox jumps over the lazy dog."
    fake.script("m", Reply(text=text, prompt_tokens=11, completion_tokens=9))
    stream = client.chat.completions.create(
        model="m", messages=MSGS, stream=True, stream_options={"include_usage": True}
    )
    deltas, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                deltas.append(c.delta.content)
            finish = c.finish_reason or finish
    assert len(deltas) > 1
    assert "".join(deltas) == text
    assert finish == "stop"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 9, 20)


def test_streaming_parallel_tool_calls(fake, client):
    fake.script("m", Reply(tool_calls=(("search", {"q": "cats", "k": 3}), ("vote", '{"agent": "a1"}'))))
    stream = client.chat.completions.create(model="m", messages=MSGS, stream=True, tools=[])
    calls: dict[int, dict] = {}
    arg_deltas = 0
    finish = None
    for chunk in stream:
        assert chunk.usage is None  # include_usage not requested
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for tc in c.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function and tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["args"] += tc.function.arguments
                    arg_deltas += 1
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["search", "vote"]
    assert json.loads(calls[0]["args"]) == {"q": "cats", "k": 3}
    assert json.loads(calls[1]["args"]) == {"agent": "a1"}
    assert all(c["id"].startswith("call_") for c in calls.values())
    assert arg_deltas >= 4  # each call's arguments split into 2+ pieces


def test_non_streaming_tool_call(fake, client):
    fake.script("m", Reply(tool_calls=(("new_answer", {"content": "42"}),)))
    r = client.chat.completions.create(model="m", messages=MSGS, response_format={"type": "json_object"})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (tc,) = choice.message.tool_calls
    assert tc.type == "function" and tc.id.startswith("call_")
    assert tc.function.name == "new_answer"
    assert json.loads(tc.function.arguments) == {"content": "42"}


def test_error_statuses(fake, client):
    fake.script("m", Reply(status=429, error_message="slow down"), Reply(status=500))
    with pytest.raises(openai.RateLimitError, match="slow down"):
        client.chat.completions.create(model="m", messages=MSGS)
    with pytest.raises(openai.InternalServerError, match="scripted failure"):
        client.chat.completions.create(model="m", messages=MSGS, stream=True)


def test_unscripted_model_and_unknown_path(fake, client):
    with pytest.raises(openai.InternalServerError, match="no scripted reply for model 'ghost'"):
        client.chat.completions.create(model="ghost", messages=MSGS)
    with pytest.raises(openai.NotFoundError):
        client.moderations.create(input="x")


def test_embeddings_are_deterministic_unit_vectors_close_for_texts_sharing_words(fake, client):
    got = client.embeddings.create(model="text-embedding-3-small", input=["the vault code", "vault code 4711", "x"])
    a, b, c = (d.embedding for d in got.data)
    assert len(a) == 1536 and abs(sum(v * v for v in a) - 1) < 1e-9
    dot = lambda u, v: sum(p * q for p, q in zip(u, v, strict=True))  # noqa: E731
    assert dot(a, b) > 0.5 > dot(a, c)
    again = client.embeddings.create(model="m", input="the vault code", dimensions=64)
    assert len(again.data[0].embedding) == 64
    assert client.embeddings.create(model="m", input="the vault code").data[0].embedding == a
    assert fake.received()[-1].path == "/v1/embeddings"


def test_handlers_default_and_models(fake, client):
    fake.script("m", lambda body: Reply(text=f"saw {len(body['messages'])}"))
    fake.default("m", lambda body: Reply(text="fallback"))
    outs = [
        client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content for _ in range(3)
    ]
    assert outs == ["saw 2", "fallback", "fallback"]
    assert [m.id for m in client.models.list()] == ["m"]


@pytest.mark.asyncio
async def test_delay_does_not_block_other_model(fake):
    aclient = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=5)
    fake.script("slow", Reply(text="slow", delay_s=0.8))
    fake.script("fast", Reply(text="fast", delay_s=0.3))
    done: list[str] = []

    async def ask(model: str) -> str | None:
        r = await aclient.chat.completions.create(model=model, messages=MSGS)
        done.append(model)
        return r.choices[0].message.content

    t0 = time.monotonic()
    results = await asyncio.gather(ask("slow"), ask("fast"))
    elapsed = time.monotonic() - t0
    await aclient.close()
    assert results == ["slow", "fast"]
    assert done == ["fast", "slow"]
    assert elapsed < 0.8 + 0.3


def test_requests_recorded_and_wait_timeout(fake, client):
    fake.script("a", Reply(text="x"))
    fake.script("b", Reply(text="y"))
    client.chat.completions.create(model="a", messages=MSGS)
    client.chat.completions.create(model="b", messages=[{"role": "user", "content": "other"}])
    assert [r["messages"] for r in fake.requests("a")] == [MSGS]
    assert [r["model"] for r in fake.requests()] == ["a", "b"]
    assert fake.wait_for_requests("a", 1, timeout_s=0.1)[0]["messages"] == MSGS
    with pytest.raises(TimeoutError, match=r"2 requests for model 'a', got 1"):
        fake.wait_for_requests("a", 2, timeout_s=0.2)


# -- the Azure route ------------------------------------------------------------------------------


def test_azure_route_streams_the_same_chunks_as_the_openai_route(fake, client):
    text = "The same reply on both routes."
    fake.script("dep", Reply(text=text, prompt_tokens=7, completion_tokens=6))
    fake.script("dep", Reply(text=text, prompt_tokens=7, completion_tokens=6))
    azure = openai.AzureOpenAI(
        azure_endpoint=fake.azure_endpoint, api_key=AZURE_API_KEY, api_version="2024-10-21", max_retries=0, timeout=5
    )

    def chunks(sdk: openai.OpenAI) -> list[tuple]:
        stream = sdk.chat.completions.create(
            model="dep", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
        return [
            ([(c.delta.content, c.finish_reason) for c in chunk.choices], chunk.usage and chunk.usage.total_tokens)
            for chunk in stream
        ]

    via_azure = chunks(azure)
    assert via_azure == chunks(client)
    assert "".join(content for choices, _ in via_azure for content, _ in choices if content) == text
    azure_req, openai_req = fake.received()
    assert azure_req.path == "/openai/deployments/dep/chat/completions" and openai_req.path == "/v1/chat/completions"
    assert azure_req.query == {"api-version": "2024-10-21"} and azure_req.headers["api-key"] == AZURE_API_KEY


def test_azure_route_refuses_a_wrong_key_no_api_version_and_an_unknown_deployment(fake):
    fake.script("dep", Reply(text="unused"))
    route = "/openai/deployments/dep/chat/completions"

    def post(path: str, key: str) -> tuple[int, dict]:
        request = urllib.request.Request(
            fake.azure_endpoint + path, data=json.dumps({"messages": MSGS}).encode(),
            headers={"api-key": key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = post(f"{route}?api-version=2024-10-21", "wrong-key")
    assert status == 401 and body["error"]["code"] == "401" and "Access denied" in body["error"]["message"]
    assert post(route, AZURE_API_KEY) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    status, body = post("/openai/deployments/nope/chat/completions?api-version=2024-10-21", AZURE_API_KEY)
    assert status == 404 and body["error"]["code"] == "DeploymentNotFound"
    assert len(fake.received()) == 3
    status, body = post(f"{route}?api-version=2024-10-21", AZURE_API_KEY)  # the scripted reply is still there
    assert status == 200 and body["choices"][0]["message"]["content"] == "unused"


# ---------------------------------------------------------------- the Responses API route

_EVENT = TypeAdapter(ResponseStreamEvent)


def test_responses_route_streams_text_as_the_sdks_event_types(fake, client):
    fake.script("gpt-r", Reply(text="Paris is the capital."))
    with client.responses.create(model="gpt-r", input="Capital of France?", stream=True) as stream:
        events = [_EVENT.validate_python(e.to_dict()) for e in stream]  # strict: every field the SDK types ask for
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 2 and "".join(deltas) == "Paris is the capital."
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert done.output_text == "Paris is the capital." and done.usage and done.usage.output_tokens == 4
    assert fake.received("gpt-r")[0].path == "/v1/responses"


def test_responses_route_streams_a_function_call_and_answers_without_streaming(fake, client):
    fake.script("gpt-r", Reply(tool_calls=(("vote", {"agent_id": "agent1", "reason": "clear"}),)))
    fake.script("gpt-r", Reply(tool_calls=(("new_answer", {"content": "Paris"}),)))
    tools = [{"type": "function", "name": "vote", "parameters": {"type": "object"}}]
    with client.responses.create(model="gpt-r", input="q", tools=tools, stream=True) as stream:  # type: ignore[arg-type]
        events = [_EVENT.validate_python(e.to_dict()) for e in stream]
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"agent_id": "agent1", "reason": "clear"}
    [call] = events[-1].response.output
    assert call.type == "function_call" and call.name == "vote" and call.call_id.startswith("call_")
    plain = client.responses.create(model="gpt-r", input="q")
    [item] = plain.output
    assert item.type == "function_call" and json.loads(item.arguments) == {"content": "Paris"}
    # team_member reads the Responses API's tool shape too.
    fake.script("gpt-r", team_member("Paris"))
    voted = client.responses.create(model="gpt-r", input="q", tools=tools)  # type: ignore[arg-type]
    assert voted.output[0].type == "function_call" and voted.output[0].name == "vote"


@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")
def test_video_jobs_follow_the_sdks_own_create_and_poll_then_download(fake, client):
    fake.video_polls = 2
    video = client.videos.create_and_poll(prompt="a red dot moving", model="sora-2", seconds="8", size="1280x720")
    assert (video.status, video.progress, video.seconds, video.size) == ("completed", 100, "8", "1280x720")
    assert client.videos.download_content(video.id).content == fake.video_mp4
    polls = [r for r in fake.received() if r.path == f"/v1/videos/{video.id}"]
    assert len(polls) == 3 and polls[0].headers["x-stainless-poll-helper"] == "true"
    assert fake.requests("sora-2") == [{"prompt": "a red dot moving", "model": "sora-2", "seconds": "8",
                                        "size": "1280x720"}]


@pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")
def test_a_failed_video_job_carries_its_error_and_has_no_content(fake, client):
    fake.video_failure = ("moderation_blocked", "blocked")
    video = client.videos.create_and_poll(prompt="x")
    assert video.status == "failed" and video.error is not None
    assert (video.error.code, video.error.message) == ("moderation_blocked", "blocked")
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve("video_nope")
def test_transcriptions_answer_text_or_json_and_record_the_file_by_name_and_size(fake, client):
    fake.transcript = "heard {name}, {size} bytes"
    text = client.audio.transcriptions.create(model="whisper-1", file=("talk.wav", b"RIFF1234"), response_format="text")
    as_json = client.audio.transcriptions.create(model="whisper-1", file=("talk.wav", b"RIFF1234"))
    assert (str(text).strip(), as_json.text) == ("heard talk.wav, 8 bytes", "heard talk.wav, 8 bytes")
    assert fake.received()[0].body == {"model": "whisper-1", "file": ["talk.wav", 8], "response_format": "text"}


def test_image_edits_send_the_image_back_and_record_the_inputs(fake, client):
    made = client.images.edit(model="gpt-image-1", image=[("a.png", b"\x89PNG1"), ("b.png", b"\x89PNG22")],
                              prompt="merge them")
    assert made.data and made.data[0].b64_json and base64.b64decode(made.data[0].b64_json) == fake.image_png
    assert fake.received()[0].body == {"model": "gpt-image-1", "prompt": "merge them",
                                       "images": [["a.png", 5], ["b.png", 6]]}


def test_an_audio_chat_reply_carries_speech_and_its_transcript(fake, client):
    fake.script("gpt-4o-audio-preview", Reply(text="Hello back"))
    reply = client.chat.completions.create(model="gpt-4o-audio-preview", modalities=["text", "audio"],
                                           audio={"voice": "alloy", "format": "mp3"},
                                           messages=[{"role": "user", "content": "Hi"}])
    audio = reply.choices[0].message.audio
    assert audio is not None and audio.transcript == "Hello back"
    assert base64.b64decode(audio.data) == fake.speech_mp3
