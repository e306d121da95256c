#!/usr/bin/env python3
"""Compatibility test: the official `openai` Python client against `autoglm-deploy serve`.

Usage: test_openai_compat.py AUTOGLM_DEPLOY_BINARY MODEL   (a GGUF file or a Hugging Face folder)

Starts the server on a free port with a temporary YAML config, waits for GET /ready, then drives
it with openai.OpenAI (models, chat and legacy completions, streaming, logprobs, errors), checks
GET /metrics with `promtool check metrics`, and stops the server with SIGTERM (exit code 0 expected).
A vision model (the fixture's tiny GLM-4.1V folder) also gets a screenshot as Open-AutoGLM sends it: a
base64 PNG `image_url` part, then the text; its greedy answer must be the reference engine's.
Exits 0 when every check passes, 1 otherwise. Needs python3 (stdlib), `openai` and `promtool`.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import CheckFailed, case, check, failures, log, summary  # noqa: E402

API_KEY = "sk-autoglm-compat-test-key"
MODEL = "tiny"
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60



def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def yaml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(directory, port, model_path):
    path = os.path.join(directory, "service.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "service:\n"
            f"  name: {MODEL}\n"
            "  host: 127.0.0.1\n"
            f"  port: {port}\n"
            f"  api_keys: [{yaml_str(API_KEY)}]\n"
            "model:\n"
            f"  path: {yaml_str(os.path.abspath(model_path))}\n"
            "runtime:\n"
            "  backend: cpu\n"
            "  threads: 2\n"
            "  kv_cache_budget: 64MiB\n"
        )
    return path


def die_with_parent():
    """preexec_fn: the server gets SIGKILL if this script dies without cleaning up (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def on_signal(signum, _frame):
    raise SystemExit(f"interrupted by signal {signum}")


def http_get(url, timeout=10):
    """(status, body text) of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), e.headers


def wait_ready(proc, base):
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"the server exited with code {proc.returncode} before /ready said 200")
        try:
            status, body, _ = http_get(base + "/ready", timeout=2)
            if status == 200:
                return
            last = f"HTTP {status} {body.strip()}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.2)
    raise CheckFailed(f"GET /ready did not say 200 within {READY_TIMEOUT_S} s (last: {last})")


# ---- the checks ----------------------------------------------------------------------------------


@case("models.list")
def check_models_list(client):
    page = client.models.list()
    ids = [m.id for m in page.data]
    # service.name first (the id responses report), then the model's own name, accepted too
    check(len(ids) == 2 and ids[0] == MODEL, f"model ids {ids!r}, expected [{MODEL!r}, the model's own name]")
    m = page.data[0]
    check(m.object == "model", f"object {m.object!r}, expected 'model'")
    check(isinstance(m.created, int), f"created {m.created!r} is not an int")
    check(isinstance(m.owned_by, str), f"owned_by {m.owned_by!r} is not a str")


@case("models.retrieve")
def check_models_retrieve(client):
    m = client.models.retrieve(MODEL)
    check(m.id == MODEL, f"id {m.id!r}, expected {MODEL!r}")
    check(m.object == "model", f"object {m.object!r}, expected 'model'")
    try:
        client.models.retrieve("no-such-model")
        raise CheckFailed("retrieving an unknown model did not raise openai.NotFoundError")
    except openai.NotFoundError:
        pass


def check_usage(usage, max_completion, what):
    check(usage is not None, f"{what}: no usage")
    check(isinstance(usage.prompt_tokens, int) and usage.prompt_tokens > 0,
          f"{what}: usage.prompt_tokens {usage.prompt_tokens!r}")
    check(isinstance(usage.completion_tokens, int) and 0 <= usage.completion_tokens <= max_completion,
          f"{what}: usage.completion_tokens {usage.completion_tokens!r}, expected 0..{max_completion}")
    check(usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
          f"{what}: usage.total_tokens {usage.total_tokens} != {usage.prompt_tokens} + {usage.completion_tokens}")


MESSAGES = [{"role": "user", "content": "Say hello."}]


@case("chat.completions (non-streaming, greedy)")
def check_chat(client):
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=8)
    check(r.object == "chat.completion", f"object {r.object!r}, expected 'chat.completion'")
    check(isinstance(r.id, str) and r.id, f"id {r.id!r}")
    check(isinstance(r.created, int), f"created {r.created!r} is not an int")
    check(r.model == MODEL, f"model {r.model!r}, expected {MODEL!r}")
    check(len(r.choices) == 1, f"{len(r.choices)} choices, expected 1")
    c = r.choices[0]
    check(c.index == 0, f"choices[0].index {c.index!r}")
    check(c.message.role == "assistant", f"message.role {c.message.role!r}")
    check(isinstance(c.message.content, str), f"message.content {c.message.content!r} is not a str")
    check(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}")
    check_usage(r.usage, 8, "chat")
    log(f"  content={c.message.content!r} finish_reason={c.finish_reason} usage={r.usage.model_dump()}")
    return c.message.content, r.usage


@case("chat.completions (streaming, include_usage)")
def check_chat_stream(client, expected_content, expected_usage):
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    check(chunks, "the stream had no chunks")
    text, reasons, roles, ids = "", [], [], set()
    for ch in chunks:
        check(ch.object == "chat.completion.chunk", f"chunk object {ch.object!r}, expected 'chat.completion.chunk'")
        check(ch.model == MODEL, f"chunk model {ch.model!r}")
        ids.add(ch.id)
        for c in ch.choices:
            if c.delta.role is not None:
                roles.append(c.delta.role)
            if c.delta.content:
                text += c.delta.content
            if c.finish_reason is not None:
                reasons.append(c.finish_reason)
    check(len(ids) == 1, f"chunks carry {len(ids)} different ids: {sorted(ids)}")
    check(roles[:1] == ["assistant"], f"delta roles {roles!r}: the first should be 'assistant'")
    check(len(reasons) == 1 and reasons[0] in ("stop", "length"),
          f"finish_reasons {reasons!r}: expected exactly one of stop/length")
    last = chunks[-1]
    check(last.usage is not None, "the final chunk has no usage (stream_options.include_usage)")
    check(last.choices == [], f"the usage chunk should have choices [], has {len(last.choices)}")
    for ch in chunks[:-1]:
        check(ch.usage is None, "a chunk before the last carries usage")
    check_usage(last.usage, 8, "stream")
    if expected_content is not None:
        check(text == expected_content, f"streamed text {text!r} != non-streaming greedy content {expected_content!r}")
    if expected_usage is not None:
        check((last.usage.prompt_tokens, last.usage.completion_tokens) ==
              (expected_usage.prompt_tokens, expected_usage.completion_tokens),
              f"stream usage {last.usage.model_dump()} != non-streaming usage {expected_usage.model_dump()}")
    log(f"  {len(chunks)} chunks, text={text!r}")


@case("completions (legacy, logprobs 2)")
def check_completion(client):
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0,
                                  logprobs=2)
    check(r.object == "text_completion", f"object {r.object!r}, expected 'text_completion'")
    check(r.model == MODEL, f"model {r.model!r}")
    check(len(r.choices) == 1, f"{len(r.choices)} choices")
    c = r.choices[0]
    check(isinstance(c.text, str), f"text {c.text!r} is not a str")
    check(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}")
    check_usage(r.usage, 4, "completion")
    lp = c.logprobs
    check(lp is not None, "choices[0].logprobs is null although logprobs=2 was asked")
    n = r.usage.completion_tokens
    check(lp.tokens is not None and len(lp.tokens) == n, f"logprobs.tokens {lp.tokens!r}: expected {n} entries")
    check(lp.token_logprobs is not None and len(lp.token_logprobs) == n,
          f"logprobs.token_logprobs {lp.token_logprobs!r}: expected {n} entries")
    check(all(isinstance(x, float) and x <= 0 for x in lp.token_logprobs), f"token_logprobs {lp.token_logprobs!r}")
    check(lp.text_offset is not None and len(lp.text_offset) == n, f"logprobs.text_offset {lp.text_offset!r}")
    check(lp.top_logprobs is not None and len(lp.top_logprobs) == n, f"logprobs.top_logprobs {lp.top_logprobs!r}")
    for i, top in enumerate(lp.top_logprobs):
        # OpenAI: up to logprobs+1 entries (the sampled token is always included)
        check(isinstance(top, dict) and 1 <= len(top) <= 3, f"top_logprobs[{i}] {top!r}: expected 1..3 entries")
        check(all(isinstance(v, float) and v <= 0 for v in top.values()), f"top_logprobs[{i}] {top!r}")
    check("".join(lp.tokens) == c.text, f"joined logprobs.tokens {''.join(lp.tokens)!r} != text {c.text!r}")
    log(f"  text={c.text!r} tokens={lp.tokens!r}")


@case("chat.completions (logprobs, top_logprobs 2)")
def check_chat_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=4, logprobs=True,
                                       top_logprobs=2)
    c = r.choices[0]
    check(c.logprobs is not None, "choices[0].logprobs is null although logprobs=true was asked")
    content = c.logprobs.content
    check(content is not None, "choices[0].logprobs.content is null")
    check(len(content) == r.usage.completion_tokens,
          f"{len(content)} logprobs.content entries, expected usage.completion_tokens = {r.usage.completion_tokens}")
    check(len(content) > 0, "no logprobs.content entries")
    for i, e in enumerate(content):
        check(isinstance(e.token, str), f"content[{i}].token {e.token!r}")
        check(isinstance(e.logprob, float) and e.logprob <= 0, f"content[{i}].logprob {e.logprob!r}")
        check(e.bytes is None or all(isinstance(b, int) and 0 <= b < 256 for b in e.bytes),
              f"content[{i}].bytes {e.bytes!r}")
        check(e.top_logprobs is not None and len(e.top_logprobs) == 2,
              f"content[{i}].top_logprobs has {len(e.top_logprobs or [])} entries, expected 2")
        for t in e.top_logprobs:
            check(isinstance(t.token, str) and isinstance(t.logprob, float) and t.logprob <= 0,
                  f"content[{i}].top_logprobs entry {t.model_dump()}")
    check("".join(e.token for e in content) == (c.message.content or ""),
          f"joined logprobs tokens {''.join(e.token for e in content)!r} != content {c.message.content!r}")
    log(f"  tokens={[e.token for e in content]!r}")


@case("wrong API key -> openai.AuthenticationError")
def check_wrong_key(base_url):
    bad = openai.OpenAI(base_url=base_url, api_key="sk-wrong-key", max_retries=0, timeout=30)
    try:
        bad.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    except openai.AuthenticationError as e:
        check(e.status_code == 401, f"status {e.status_code}")
        check(isinstance(e.body, dict) and isinstance(e.body.get("message"), str),
              f"error body {e.body!r}: expected {{'error': {{'message': ...}}}}")
        log(f"  {e}")
        return
    raise CheckFailed("no exception raised")


@case("max_tokens=-1 -> openai.BadRequestError")
def check_bad_request(client):
    try:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=-1)
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"status {e.status_code}")
        check(isinstance(e.body, dict) and isinstance(e.body.get("message"), str),
              f"error body {e.body!r}: expected {{'error': {{'message': ...}}}}")
        check(e.param == "max_tokens", f"error param {e.param!r}, expected 'max_tokens'")
        log(f"  {e}")
        return
    raise CheckFailed("no exception raised")


@case("GET /metrics | promtool check metrics")
def check_metrics(base):
    status, body, headers = http_get(base + "/metrics")
    check(status == 200, f"GET /metrics: HTTP {status}")
    ctype = headers.get("Content-Type", "")
    check(ctype.startswith("text/plain"), f"Content-Type {ctype!r}, expected text/plain; version=0.0.4")
    for name in ("autoglm_requests_total", "autoglm_model_ready 1"):
        check(name in body, f"/metrics has no {name!r}")
    p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    out = (p.stdout + p.stderr).strip()
    log(f"  promtool check metrics: exit {p.returncode}" + (f"\n{out}" if out else ""))
    check(p.returncode == 0, f"promtool check metrics exited {p.returncode}: {out}")


# ---- main ----------------------------------------------------------------------------------------


# The reference engine's (transformers) greedy ids for the glm4v fixture's prompt `a`.
SCREENSHOT_GREEDY_IDS = "466 1416 257 1077 944 132 944 132"


def is_vision_model(model_path):
    config = os.path.join(model_path, "config.json")
    if not os.path.isfile(config):
        return False
    with open(config, encoding="utf-8") as f:
        return "vision_config" in json.load(f)


def screenshot_messages(model_path):
    png = os.path.join(model_path, "..", "images", "screen_tall.png")
    with open(png, "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": "What is on this screen?"}]}]


def reference_answer(binary, model_path):
    out = subprocess.run([binary, "detokenize", "--model", model_path, "--ids", SCREENSHOT_GREEDY_IDS],
                         capture_output=True, check=True).stdout
    return out.rstrip(b"\n").decode("utf-8", "replace")


@case("chat with a screenshot (image_url, base64 PNG)")
def check_screenshot(client, binary, model_path):
    expected = reference_answer(binary, model_path)
    r = client.chat.completions.create(model=MODEL, messages=screenshot_messages(model_path), max_tokens=8,
                                       temperature=0)
    content = r.choices[0].message.content
    check(content == expected, f"content {content!r}, expected the reference engine's {expected!r}")
    check(r.usage.prompt_tokens == 100, f"prompt_tokens {r.usage.prompt_tokens}, expected 100 (84 image tokens)")
    details = r.usage.model_dump().get("prompt_tokens_details") or {}
    check(details.get("image_tokens") == 84, f"prompt_tokens_details {details!r}: expected image_tokens 84")
    stream = client.chat.completions.create(model=MODEL, messages=screenshot_messages(model_path), max_tokens=8,
                                            temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    check(text == expected, f"streamed {text!r}, expected {expected!r}")
    log(f"  content={content!r}")


@case("a broken image is a 400 naming the part")
def check_bad_screenshot(client, model_path):
    messages = screenshot_messages(model_path)
    messages[0]["content"][0]["image_url"]["url"] = "data:image/png;base64,iVBORw0KGgo="
    try:
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    except openai.BadRequestError as e:
        body = e.body if isinstance(e.body, dict) else {}
        check(body.get("param") == "messages[0].content[0].image_url", f"param {body.get('param')!r}")
        return
    raise CheckFailed("a truncated PNG was accepted")


def main():
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} AUTOGLM_DEPLOY_BINARY MODEL", file=sys.stderr)
        return 2
    binary, model_path = sys.argv[1], sys.argv[2]
    for p in (binary, model_path):
        if not os.path.exists(p):
            print(f"FAIL: {p} does not exist", file=sys.stderr)
            return 1
    if shutil.which("promtool") is None:
        print("FAIL: promtool not found on PATH (Debian package 'prometheus')", file=sys.stderr)
        return 1
    log(f"openai {openai.__version__}; server {binary}; model {model_path}")

    tmp = tempfile.mkdtemp(prefix="autoglm-openai-compat-")
    port = free_port()
    config = write_config(tmp, port, model_path)
    base = f"http://127.0.0.1:{port}"
    log_path = os.path.join(tmp, "server.log")
    server_log = open(log_path, "wb")
    signal.signal(signal.SIGTERM, on_signal)  # ctest's timeout: still run the cleanup below
    proc = subprocess.Popen([binary, "serve", "--config", config], stdout=server_log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    stopped = False
    try:
        try:
            wait_ready(proc, base)
            log(f"PASS server ready on {base}")
        except CheckFailed as e:
            failures.append(f"startup: {e}")
            log(f"FAIL startup: {e}")
            return 1

        client = openai.OpenAI(base_url=base + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        check_models_list(client)
        check_models_retrieve(client)
        greedy = check_chat(client)
        content, usage = greedy if greedy else (None, None)
        check_chat_stream(client, content, usage)
        check_completion(client)
        check_chat_logprobs(client)
        check_wrong_key(base + "/v1")
        check_bad_request(client)
        if is_vision_model(model_path):
            check_screenshot(client, binary, model_path)
            check_bad_screenshot(client, model_path)
        check_metrics(base)

        log("stopping the server (SIGTERM)")
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
            stopped = True
            if code != 0:
                failures.append(f"shutdown: exit code {code} after SIGTERM, expected 0")
                log(f"FAIL shutdown: exit code {code} after SIGTERM, expected 0")
            else:
                log("PASS shutdown: exit code 0 after SIGTERM")
        except subprocess.TimeoutExpired:
            failures.append(f"shutdown: still running {STOP_TIMEOUT_S} s after SIGTERM")
            log(f"FAIL shutdown: still running {STOP_TIMEOUT_S} s after SIGTERM")
    finally:
        if not stopped and proc.poll() is None:
            proc.kill()
            proc.wait()
        server_log.close()
        if failures:
            with open(log_path, "r", encoding="utf-8", errors="replace") as f:
                log("---- server log ----\n" + f.read().rstrip() + "\n---- end of server log ----")
        shutil.rmtree(tmp, ignore_errors=True)

    return summary("all OpenAI-compatibility checks passed")


if __name__ == "__main__":
    sys.exit(main())
