"""An OpenAI-compatible HTTP API over the serving engine (efficient.serve): what ``python -m transformer_np serve``
runs, so any program that speaks the API every LLM client speaks can use a model of this package.

    POST /v1/chat/completions   messages -> the assistant's answer (a chat model's template), streamed or not
    POST /v1/completions        a prompt -> its continuation, streamed or not
    GET  /v1/models             the one model served
    GET  /health                {"status": "ok"}

Streaming is server-sent events: one ``data: {chunk}`` per piece of text, then ``data: [DONE]``.  Errors are
OpenAI's error object ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad parameter, 404 for
another model's name, 413 for a prompt and max_tokens past the context, 503 while shutting down.

Concurrency: the engine runs in one thread of its own (:class:`EngineThread`) — every request handler only posts
to it and awaits the tokens it sends back — so concurrent requests are batched by the engine, step by step.  A
client that disconnects mid-stream cancels its request (its blocks return to the pool); at shutdown the engine
finishes the running requests for up to ``drain_s`` seconds, then cancels the rest, each stream ending with its
finish reason and ``[DONE]``.

The ASGI stack is Starlette (routing, requests, streaming responses: a small, well-kept toolkit; FastAPI is
Starlette plus a validation layer we do not need) served by uvicorn — both imported only by this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
import uuid

from ..efficient.paged import BlockPool
from ..efficient.serve import Server
from .options import StopStrings

MAX_STOPS = 4  # OpenAI's limit on stop sequences


class ApiError(Exception):
    """An error the client caused: its HTTP status and OpenAI's error object."""

    def __init__(self, status, message, param=None, code=None, type_="invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.type = status, param, code, type_

    def body(self):
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


class EngineThread:
    """The engine's own thread: it alone touches the :class:`~transformer_np.efficient.serve.Server`.  Handlers
    post requests (:meth:`submit`) and cancellations (:meth:`cancel`); after each engine step every request's new
    tokens, then its end, are put on the asyncio queue the handler awaits, as ``("tokens", [ids])``,
    ``("done", finish_reason)`` or ``("error", ApiError)``."""

    def __init__(self, server, drain_s=5.0):
        self.server, self.drain_s = server, drain_s
        self.inbox = queue.Queue()
        self.listeners = {}  # request id -> [event loop, asyncio queue, request, tokens sent]
        self.stopping = None  # the time stop() was called
        self.thread = threading.Thread(target=self._loop, name="engine", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def submit(self, loop, q, **request):
        """Queue a request (Server.submit's arguments); its tokens arrive on ``q`` (an asyncio.Queue of ``loop``).
        Returns a handle for :meth:`cancel`."""
        handle = {"id": None}
        self.inbox.put(("submit", loop, q, request, handle))
        return handle

    def cancel(self, handle):
        self.inbox.put(("cancel", handle))

    def stop(self, timeout=None):
        """Stop taking requests; finish the running ones for up to drain_s seconds, cancel the rest; join."""
        self.inbox.put(("stop",))
        self.thread.join(timeout)

    # --- the thread ---
    def _send(self, entry, event):
        loop, q = entry[0], entry[1]
        loop.call_soon_threadsafe(q.put_nowait, event)

    def _handle(self, message):
        kind = message[0]
        if kind == "stop":
            self.stopping = self.stopping or time.perf_counter()
        elif kind == "cancel":
            rid = message[1]["id"]
            entry = self.listeners.get(rid)
            if entry is not None and not entry[2].done:
                self.server.cancel(entry[2])
        elif kind == "submit":
            _, loop, q, request, handle = message
            if self.stopping:
                loop.call_soon_threadsafe(q.put_nowait, ("error", ApiError(503, "the server is shutting down",
                                                                           type_="server_error")))
                return
            try:
                req = self.server.submit(**request)
            except ValueError as e:
                loop.call_soon_threadsafe(q.put_nowait, ("error", ApiError(400, str(e))))
                return
            handle["id"] = req.id
            self.listeners[req.id] = [loop, q, req, 0]

    def _notify(self):
        for rid, entry in list(self.listeners.items()):
            req, sent = entry[2], entry[3]
            if len(req.output) > sent:
                self._send(entry, ("tokens", req.output[sent:]))
                entry[3] = len(req.output)
            if req.done:
                self._send(entry, ("done", req.finish_reason))
                del self.listeners[rid]

    def _next(self):
        try:
            return self.inbox.get_nowait()
        except queue.Empty:
            return None

    def _loop(self):
        server = self.server
        while True:
            if server.waiting or server.running or self.stopping:
                message = self._next()
            else:
                message = self.inbox.get()  # idle: sleep until a request (or stop) arrives
            while message is not None:
                self._handle(message)
                message = self._next()
            if self.stopping and (not (server.waiting or server.running)
                                  or time.perf_counter() - self.stopping > self.drain_s):
                for req in list(server.waiting) + list(server.running):
                    server.cancel(req)
                self._notify()
                return
            if server.waiting or server.running:
                try:
                    server.step()
                except Exception as e:  # noqa: BLE001 - a model failure ends the requests in flight, not the thread
                    failure = ApiError(500, f"the engine failed: {e}", type_="server_error")
                    for entry in self.listeners.values():
                        self._send(entry, ("error", failure))
                    for req in list(server.waiting) + list(server.running):
                        server.cancel(req)
                    self.listeners.clear()
                self._notify()


# --- requests -------------------------------------------------------------------------------------------------
def _number(body, name, low, high, default=None, low_open=False):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            (low < value if low_open else low <= value) and value <= high):
        raise ApiError(400, f"{name} must be a number in {'(' if low_open else '['}{low}, {high}], got {value!r}",
                       name)
    return value


def _integer(body, name, low, default=None):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ApiError(400, f"{name} must be an integer >= {low}, got {value!r}", name)
    return value


def sampling_options(body, model):
    """The engine's keywords from an API request's body: max_tokens (or max_completion_tokens), temperature,
    top_p, seed, stop, stream; what the engine cannot do (n > 1, logprobs, penalties, tools) is a 400 naming it."""
    if body.get("model") != model.name:
        raise ApiError(404, f"the model {body.get('model')!r} does not exist: this server serves {model.name!r}",
                       "model", "model_not_found")
    for name, ok in (("n", lambda v: v in (None, 1)), ("logprobs", lambda v: v in (None, False)),
                     ("top_logprobs", lambda v: v is None), ("tools", lambda v: not v),
                     ("presence_penalty", lambda v: v in (None, 0)), ("frequency_penalty", lambda v: v in (None, 0)),
                     ("logit_bias", lambda v: not v), ("echo", lambda v: v in (None, False)),
                     ("best_of", lambda v: v in (None, 1)), ("suffix", lambda v: v is None)):
        if not ok(body.get(name)):
            raise ApiError(400, f"{name}={body.get(name)!r} is not supported by this server", name)
    max_tokens = _integer(body, "max_completion_tokens", 1, _integer(body, "max_tokens", 1, 16))
    temperature = _number(body, "temperature", 0, 2, 1.0)
    top_p = _number(body, "top_p", 0, 1, 1.0, low_open=True)
    seed = _integer(body, "seed", 0)
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in stop):
        raise ApiError(400, f"stop must be a string or up to {MAX_STOPS} non-empty strings, got {body.get('stop')!r}",
                       "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, got {stream!r}", "stream")
    greedy = temperature == 0  # the ranges above are the engine's: Server.submit checks them again
    return dict(max_new_tokens=max_tokens, temperature=None if greedy else temperature,
                top_p=None if greedy or top_p == 1 else top_p, seed=seed, stop=tuple(stop)), stream


def _check_context(ids, options, model, pool):
    n = len(ids) + options["max_new_tokens"]
    if n > model.config.max_len:
        raise ApiError(413, f"the prompt ({len(ids)} tokens) and max_tokens ({options['max_new_tokens']}) exceed the "
                            f"model's context of {model.config.max_len} tokens", "messages", "context_length_exceeded")
    if -(-n // pool.block_size) > pool.n_blocks:
        raise ApiError(413, f"the prompt ({len(ids)} tokens) and max_tokens ({options['max_new_tokens']}) need more "
                            f"than the server's whole KV cache ({pool.n_blocks} blocks of {pool.block_size})",
                       "max_tokens", "context_length_exceeded")


def chat_prompt(body, model):
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise ApiError(400, "messages must be a non-empty list of {role, content} objects with string content",
                       "messages")
    if model.chat_template is None:
        raise ApiError(400, f"{model.name} is a base model with no chat template: use /v1/completions", "model")
    try:
        return model.chat_ids([{"role": m["role"], "content": m["content"]} for m in messages])
    except ValueError as e:  # a template's own refusal (an unknown role, say)
        raise ApiError(400, str(e), "messages") from None


def completion_prompt(body, model):
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "prompt must be one non-empty string", "prompt")
    return model.prompt_ids(prompt)


# --- the app --------------------------------------------------------------------------------------------------
def make_app(model, server=None, drain_s=5.0, n_blocks=512, max_batch=8, chunk=256):
    """The Starlette app serving ``model`` (a TextLLM) through ``server`` (default: a Server over a pool of
    ``n_blocks`` blocks); its engine thread runs from the app's startup to its shutdown (``app.state.engine``)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    if server is None:
        server = Server(model, BlockPool.for_model(model, n_blocks), max_batch=max_batch, chunk=chunk)
    engine = EngineThread(server, drain_s)

    def error(e):
        return JSONResponse(e.body(), status_code=e.status)

    async def body_of(request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body must be JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    async def run(request, chat):
        try:
            body = await body_of(request)
            options, stream = sampling_options(body, model)
            ids = chat_prompt(body, model) if chat else completion_prompt(body, model)
            _check_context(ids, options, model, server.pool)
        except ApiError as e:
            return error(e)
        loop, q = asyncio.get_running_loop(), asyncio.Queue()
        handle = engine.submit(loop, q, prompt=ids, eos_id=model.eos_id, **options)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        pieces = _pieces(model, q, options["stop"])
        if stream:
            return StreamingResponse(_sse(pieces, handle, rid, created, chat),
                                     media_type="text/event-stream")
        try:
            got = [item async for item in pieces]  # (text, finish reason or None, tokens so far)
        except ApiError as e:
            return error(e)
        text, (_, reason, n) = "".join(piece for piece, _, _ in got), got[-1]
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason} if chat
                  else {"index": 0, "text": text, "finish_reason": reason, "logprobs": None})
        return JSONResponse({"id": rid, "object": "chat.completion" if chat else "text_completion",
                             "created": created, "model": model.name, "choices": [choice],
                             "usage": {"prompt_tokens": len(ids), "completion_tokens": n,
                                       "total_tokens": len(ids) + n}})

    async def _sse(pieces, handle, rid, created, chat):
        obj = "chat.completion.chunk" if chat else "text_completion"
        done = False

        def event(data):
            return f"data: {json.dumps(data)}\n\n"

        def chunk(piece, reason=None, delta=None):
            choice = ({"index": 0, "delta": {"content": piece} if delta is None else delta, "finish_reason": reason}
                      if chat else {"index": 0, "text": piece, "finish_reason": reason, "logprobs": None})
            return event({"id": rid, "object": obj, "created": created, "model": model.name, "choices": [choice]})

        try:
            if chat:
                yield chunk("", delta={"role": "assistant", "content": ""})
            async for piece, reason, _ in pieces:
                if piece:
                    yield chunk(piece)
                if reason is not None:
                    yield chunk("", reason, delta={} if chat else None)
            done = True
            yield "data: [DONE]\n\n"
        except ApiError as e:
            done = True
            yield event(e.body())
        finally:
            if not done:  # the client went away: its request is cancelled, its blocks freed
                engine.cancel(handle)

    async def chat_completions(request):
        return await run(request, chat=True)

    async def completions(request):
        return await run(request, chat=False)

    async def models(request):
        return JSONResponse({"object": "list", "data": [{"id": model.name, "object": "model", "created": 0,
                                                         "owned_by": "transformer_np"}]})

    async def health(request):
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine.start()
        try:
            yield
        finally:  # shutdown: running requests finish (up to drain_s), then the rest are cancelled
            await asyncio.to_thread(engine.stop, drain_s + 30)

    app = Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                            Route("/v1/completions", completions, methods=["POST"]),
                            Route("/v1/models", models), Route("/health", health)], lifespan=lifespan)
    app.state.engine = engine
    return app


def uvicorn_server(app, drain_s=5.0, **config):
    """A uvicorn server of ``app`` (``config``: uvicorn.Config's keywords) whose shutdown — on SIGINT or SIGTERM,
    or ``should_exit`` — first stops the engine (running requests finish for up to drain_s seconds, the rest are
    cancelled, every stream ends with its finish reason and [DONE]), then closes the connections.  Without this,
    uvicorn would wait for the open streams to end by themselves before the app heard of the shutdown."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            await asyncio.to_thread(app.state.engine.stop, drain_s + 30)
            await super().shutdown(sockets)

    return Server(uvicorn.Config(app, **config))


async def _pieces(model, q, stops):
    """(new text, finish reason or None, tokens so far) as the engine's events arrive: the tokens' text (UTF-8
    completed, special tokens skipped) cut before the first stop string; raises ApiError on an engine error."""
    decoder, stopper, n = model.stream_decoder(skip_special=True), StopStrings(stops), 0
    while True:
        kind, value = await q.get()
        if kind == "error":
            raise value
        if kind == "tokens":
            n += len(value)
            text = "".join(stopper.feed(decoder.feed(t)) for t in value)
            if text:
                yield text, None, n
        else:
            tail = stopper.feed(decoder.flush()) + stopper.flush()
            yield tail, "stop" if stopper.hit else value, n  # "stop", "length", or "cancelled" (at shutdown)
            return
