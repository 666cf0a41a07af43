"""``serve``'s OpenAI-compatible API, tested with the official ``openai`` client against a server started here on a
free port (SmolLM2-135M-Instruct): answers equal the model's own, streamed chunks reassemble into the same text,
concurrent clients each get what they get alone, bad requests get OpenAI's error objects, and a client that goes
away mid-stream gives every block back."""

import concurrent.futures
import json
import socket
import threading
import time

import numpy as np
import pytest
from helpers import skip_without_smollm2

openai = pytest.importorskip("openai", reason="the official client is the test oracle: pip install openai==2.54.0")
uvicorn = pytest.importorskip("uvicorn", reason="serve needs uvicorn, starlette: pip install 'transformer_np[serve]'")
httpx = pytest.importorskip("httpx")


def wait_for(condition, polls=3000):
    """Poll ``condition`` every 20 ms until it holds (True) or ``polls`` polls have failed (False): a bound on the
    waiting, not a measured time."""
    for _ in range(polls):
        if condition():
            return True
        time.sleep(0.02)
    return False


class Running:
    """A server of ``app`` on a free port in a thread, until :meth:`close`."""

    def __init__(self, app, drain_s=5.0):
        from transformer_np.cli.openai_api import uvicorn_server

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn_server(app, drain_s, log_level="warning", lifespan="on")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        assert wait_for(lambda: self.server.started or not self.thread.is_alive()) and self.server.started, \
            "the server did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self):
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="none", max_retries=0, timeout=120)

    def close(self):
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()


@pytest.fixture(scope="module")
def model():
    skip_without_smollm2()
    from transformer_np.cli.llm import load_llm

    return load_llm("smollm2")


@pytest.fixture(scope="module")
def served(model):
    from transformer_np.cli.openai_api import make_app

    running = Running(make_app(model, n_blocks=256, max_batch=8, chunk=64))
    yield running
    running.close()


def ask(text):
    return [{"role": "user", "content": text}]


def alone(model, text, n):
    """The model's own greedy answer: its text (special tokens skipped) and tokens."""
    ids = model.chat_ids(ask(text))
    out = model.generate(ids, n)
    return model.detokenize(out, skip_special=True), out


def test_health_and_models(served, model):
    assert httpx.get(f"{served.url}/health").json() == {"status": "ok"}
    assert [m.id for m in served.client().models.list().data] == [model.name]


def test_a_chat_completion_is_the_models_own_answer(served, model):
    r = served.client().chat.completions.create(model=model.name, messages=ask("What is the capital of France?"),
                                                max_tokens=24, temperature=0)
    text, tokens = alone(model, "What is the capital of France?", 24)
    assert r.choices[0].message.content == text and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == ("stop" if tokens[-1] == model.eos_id else "length")
    assert r.usage.completion_tokens == len(tokens)
    assert r.usage.prompt_tokens == len(model.chat_ids(ask("What is the capital of France?")))


def test_streamed_chunks_reassemble_into_the_same_text_for_the_same_seed(served, model):
    client = served.client()
    kw = dict(model=model.name, messages=ask("Tell me a short story about a cat."), max_tokens=20, temperature=0.9,
              top_p=0.95, seed=7)
    whole = client.chat.completions.create(**kw).choices[0]
    chunks = list(client.chat.completions.create(**kw, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.message.content
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason
    other = client.chat.completions.create(**{**kw, "seed": 8}).choices[0].message.content
    assert other != whole.message.content  # the seed is what made them equal


def test_eight_concurrent_clients_each_get_what_they_get_alone(served, model):
    questions = ["What is 2 + 2?", "Name a color.", "What is the capital of Italy?", "Say hello.",
                 "What is water made of?", "Name a planet.", "Count to three.", "What is a cat?"]

    def one(q):
        return served.client().chat.completions.create(model=model.name, messages=ask(q), max_tokens=8,
                                                       temperature=0).choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, questions))
    assert got == [alone(model, q, 8)[0] for q in questions]
    engine = served.server.config.app.state.engine
    assert max(o[0] for o in engine.server.occupancy) > 1  # they were batched, not served one by one


def test_text_completions_stop_at_a_stop_string(served, model):
    client = served.client()
    r = client.completions.create(model=model.name, prompt="One, two, three,", max_tokens=12, temperature=0)
    full = r.choices[0].text
    assert full == model.detokenize(model.generate(model.prompt_ids("One, two, three,"), 12, eos_id=None))
    cut = full.index(",", 2)
    stopped = client.completions.create(model=model.name, prompt="One, two, three,", max_tokens=12, temperature=0,
                                        stop=[full[cut:cut + 2]])
    assert stopped.choices[0].text == full[:cut] and stopped.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("kw, status, param", [
    (dict(temperature=3.0), 400, "temperature"), (dict(top_p=0.0), 400, "top_p"), (dict(max_tokens=0), 400,
                                                                                   "max_tokens"),
    (dict(n=2), 400, "n"), (dict(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    (dict(model="gpt-4o"), 404, "model"), (dict(max_tokens=9000), 413, "messages")])
def test_bad_requests_get_openais_error_objects(served, model, kw, status, param):
    args = dict(model=model.name, messages=ask("hi"), max_tokens=4) | kw
    with pytest.raises(openai.APIStatusError) as e:
        served.client().chat.completions.create(**args)
    assert e.value.status_code == status
    error = e.value.body  # the client hands back the body's "error" object
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"
    r = httpx.post(f"{served.url}/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["message"] == "the request body must be JSON"


def test_a_client_that_disconnects_mid_stream_gives_every_block_back(served, model):
    engine = served.server.config.app.state.engine
    pool = engine.server.pool
    body = {"model": model.name, "messages": ask("Write a long essay about the sea."), "max_tokens": 400,
            "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body, timeout=60) as r:
        got = []
        for line in r.iter_lines():
            if line.startswith("data: {"):
                got.append(json.loads(line[6:]))
            if len(got) >= 4:
                break
        assert pool.used_blocks > 0  # it is running
    wait_for(lambda: not (pool.used_blocks or engine.server.running))  # the engine notices at its next step
    assert pool.used_blocks == 0 and not engine.server.running
    cancelled = [r for r in engine.server.finished if r.finish_reason == "cancelled"]
    assert cancelled and len(cancelled[-1].output) < 400


def test_shutdown_finishes_or_cancels_running_requests_and_ends_their_streams(model):
    from transformer_np.cli.openai_api import make_app

    app = make_app(model, n_blocks=64, max_batch=2, chunk=32, drain_s=0.5)
    running = Running(app, drain_s=0.5)
    body = {"model": model.name, "messages": ask("Write a long essay about the sea."), "max_tokens": 300,
            "stream": True, "temperature": 0}
    events = []

    def read():
        with httpx.stream("POST", f"{running.url}/v1/chat/completions", json=body, timeout=60) as r:
            events.extend(line for line in r.iter_lines() if line.startswith("data: "))

    reader = threading.Thread(target=read)
    reader.start()
    engine = app.state.engine
    assert wait_for(lambda: engine.server.running)
    running.close()  # as SIGINT / SIGTERM do: uvicorn's graceful shutdown, then the app's lifespan end
    reader.join(60)
    assert events[-1] == "data: [DONE]"
    reasons = [json.loads(e[6:])["choices"][0]["finish_reason"] for e in events[:-1]]
    assert reasons[-1] == "cancelled" and engine.server.pool.used_blocks == 0  # 300 tokens take more than 0.5 s
    assert not engine.thread.is_alive()
    assert np.all([r.done for r in engine.server.finished])
