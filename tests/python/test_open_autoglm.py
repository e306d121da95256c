#!/usr/bin/env python3
"""Open-AutoGLM against `autoglm-deploy deploy`, step after step, with the official `openai` client.
Usage: test_open_autoglm.py AUTOGLM_DEPLOY_BINARY MODEL   (the tiny GLM-4.1V Hugging Face folder)

The phone agent's requests as its scripts send them (model "autoglm-phone-9b", max_tokens 3000,
temperature 0, top_p 0.85, frequency_penalty 0.2; a ~2.4 k-character system prompt, then a user turn of
one image_url part — a 1080x2400 RGBA PNG as a base64 data: URL — and a text part), to a server started
with --served-model-name. Then a three-step agent conversation built the way the agent builds it
(earlier screenshots removed, earlier answers re-rendered as <think>..</think><answer>..</answer>):
each step's cached_tokens covers what the step before sent ahead of its screenshot, and its first
token's logprobs equal those of the same request on a server with the prefix cache off. The same
screenshot twice is encoded once (encoder cache metric); hostile vision requests are 400s.
The system text and the screenshots are made here (nothing is copied from Open-AutoGLM).
"""
import base64
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import CheckFailed, case, check, failures, log, summary  # noqa: E402

NAMES = ["autoglm-phone-9b", "autoglm-phone-9b-multilingual"]
READY_TIMEOUT_S = 120
LOGPROB_TOLERANCE = 2e-3  # float sums in a different order (cached K/V vs computed in one pass)


# ---- what the agent sends ------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You are a phone operating agent. Today is a weekday. You see the phone's current screen as an image "
    "and a task from the user. Think about what is on the screen, then answer with exactly one action.\n"
    "Write your reasoning inside <think></think> and the action inside <answer></answer>.\n"
    "Actions:\n"
    "- do(action=\"Launch\", app=\"name\"): open an app by its name.\n"
    "- do(action=\"Tap\", element=[x,y]): tap the point (x, y); coordinates run from 0 to 999 across the screen.\n"
    "- do(action=\"Type\", text=\"...\"): type text into the focused field.\n"
    "- do(action=\"Swipe\", start=[x1,y1], end=[x2,y2]): swipe from one point to another.\n"
    "- do(action=\"Back\"): press the back button. do(action=\"Home\"): go to the home screen.\n"
    "- do(action=\"Long Press\", element=[x,y]) and do(action=\"Double Tap\", element=[x,y]).\n"
    "- do(action=\"Wait\", duration=\"2 seconds\"): wait for the screen to load.\n"
    "- do(action=\"Take_over\", message=\"...\"): hand over to the user for a login or a payment.\n"
    "- finish(message=\"...\"): the task is done; say what was achieved.\n"
    "Rules:\n"
    "1. Before acting, check that the current app is the one the task needs; if not, launch it.\n"
    "2. If the screen is still loading, wait at most three times, then go back and try another way.\n"
    "3. If a page does not show what you need, swipe to look for it before giving up.\n"
    "4. When a search gives nothing, go back one level and search again with fewer words.\n"
    "5. Check the result of every action on the next screen before you take the next one.\n"
    "6. When several items match, pick the one that fits the task best and say why.\n"
    "7. Never type passwords or pay for anything: take over instead.\n"
    "8. Keep the answer short: one action per step, nothing after the closing answer tag.\n"
    "9. If an action did not work, do not repeat it more than twice; try another element or path.\n"
    "10. Finish as soon as the task is done, with a message that says what the user asked for.\n"
    "Screens come from many apps: shopping, maps, food delivery, music, chat, settings and travel. "
    "Buttons may be icons without text; read their shape and position. Dialogs may cover the screen: "
    "close them first unless they belong to the task. Text may be in several languages.\n"
)


def png_rgba(width, height, seed):
    """A 1080x2400-style RGBA screenshot: a status bar, coloured cards, a keyboard-like grid."""
    rows = []
    for y in range(height):
        band = (y // 150 + seed) % 6
        colour = [(240, 240, 245), (30, 120, 200), (250, 250, 250), (220, 60, 60), (60, 170, 90), (20, 20, 28)][band]
        alpha = 255 if y > 60 else 200
        pixel = bytes((colour[0], (colour[1] + seed * 37) % 256, colour[2], alpha))
        line = bytearray(pixel * width)
        # a vertical stripe whose place depends on the row and the seed, so rows differ
        x0 = ((y * 7 + seed * 101) % (width - 40)) * 4
        line[x0:x0 + 160] = bytes((0, 0, 0, 255)) * 40
        rows.append(b"\x00" + bytes(line))
    raw = b"".join(rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def data_url(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def screen_info(step):
    return f"** Screen Info **\n\n{{\"current_app\": \"Settings\", \"step\": {step}}}"


def user_turn(screenshot, text):
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(screenshot)}},
                                        {"type": "text", "text": text}]}


def answer_turn(thinking, action):
    return {"role": "assistant", "content": f"<think>{thinking}</think><answer>{action}</answer>"}


def strip_images(message):
    """What the agent keeps of an earlier user turn: its text parts only."""
    text = "".join(p["text"] for p in message["content"] if p["type"] == "text")
    return {"role": "user", "content": [{"type": "text", "text": text}]}


AGENT_PARAMS = dict(max_tokens=3000, temperature=0, top_p=0.85, frequency_penalty=0.2)


# ---- the server ----------------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


def http_get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


class Server:
    """`deploy` with the served names and a config for the rest; prefix_cache on or off."""

    def __init__(self, binary, model, tmp, name, prefix_cache=True, extra_args=()):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = os.path.join(tmp, f"{name}.yaml")
        with open(config, "w", encoding="utf-8") as f:
            f.write("runtime:\n  backend: cpu\n  threads: 2\n  kv_cache_budget: 64MiB\n"
                    f"  prefix_cache: {'true' if prefix_cache else 'false'}\n")
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.log = open(self.log_path, "wb")
        args = [binary, "deploy", "--config", config, "--model", model, "--host", "127.0.0.1", "--port", str(self.port)]
        for n in NAMES:
            args += ["--served-model-name", n]
        self.proc = subprocess.Popen(args + list(extra_args), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CheckFailed(f"{name}: the server exited with code {self.proc.returncode}:\n{self.output()}")
            try:
                if http_get(self.base + "/ready", timeout=2)[0] == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        else:
            raise CheckFailed(f"{name}: /ready did not say 200 within {READY_TIMEOUT_S} s")
        self.client = openai.OpenAI(base_url=self.base + "/v1", api_key="unused", max_retries=0, timeout=300)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()

    def metric(self, name):
        status, body = http_get(self.base + "/metrics")
        check(status == 200, f"GET /metrics: HTTP {status}")
        m = re.search(rf"^{name} ([0-9.e+-]+)$", body, re.M)
        check(m is not None, f"/metrics has no {name}")
        return float(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = None
            check(code == 0, f"exit code {code} after SIGTERM, expected 0")
        self.log.close()


def tokens_of(binary, model, text):
    """How many tokens the model's tokenizer makes of a rendered prompt (special tokens parsed)."""
    out = subprocess.run([binary, "tokenize", "--model", model, "--special", "--text", text], capture_output=True,
                         check=True, text=True).stdout
    return len(out.split())


def rendered_prefix(messages):
    """The prompt text of `messages` up to the last user turn's first image, as the GLM-4.1V template
    renders it ([gMASK]<sop>, then <|role|>\\n and the content; an image is <|begin_of_image|>...)."""
    out = "[gMASK]<sop>"
    for i, m in enumerate(messages):
        out += f"<|{m['role']}|>\n"
        parts = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for p in parts:
            if p["type"] == "image_url":
                check(i == len(messages) - 1, "only the last turn holds a screenshot")
                return out
            out += p["text"]
    raise CheckFailed("the last turn has no screenshot")


# ---- the checks ----------------------------------------------------------------------------------


@case("the served names: /v1/models lists them, the first is the id, an unknown name is a 404")
def check_names(server):
    ids = [m.id for m in server.client.models.list().data]
    check(ids == NAMES, f"model ids {ids!r}, expected {NAMES!r}")
    r = server.client.chat.completions.create(model=NAMES[1], messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=2, temperature=0)
    check(r.model == NAMES[0], f"response model {r.model!r}, expected the first name {NAMES[0]!r}")
    try:
        server.client.chat.completions.create(model="autoglm", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        raise CheckFailed("a name not in --served-model-name was served")
    except openai.NotFoundError:
        pass


@case("Open-AutoGLM's request (1080x2400 RGBA PNG, its parameters): 200, content, image tokens, streaming and not")
def check_agent_request(server):
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                user_turn(png_rgba(1080, 2400, 0), "Task: open the Wi-Fi settings.\n\n" + screen_info(1))]
    r = server.client.chat.completions.create(model=NAMES[0], messages=messages, **AGENT_PARAMS)
    check(r.choices[0].message.content, "no content")
    check(r.choices[0].finish_reason in ("stop", "length"), f"finish_reason {r.choices[0].finish_reason!r}")
    details = r.usage.model_dump().get("prompt_tokens_details") or {}
    check((details.get("image_tokens") or 0) > 0, f"usage {r.usage.model_dump()}: no image tokens counted")
    check(r.usage.completion_tokens <= 3000, f"completion_tokens {r.usage.completion_tokens}")
    log(f"  non-streaming: usage {r.usage.model_dump()}")
    stream = server.client.chat.completions.create(model=NAMES[0], messages=messages, stream=True,
                                                   stream_options={"include_usage": True}, **AGENT_PARAMS)
    text, usage = "", None
    for chunk in stream:
        for c in chunk.choices:
            text += c.delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    check(text == r.choices[0].message.content, "the streamed answer differs from the non-streaming one (temperature 0)")
    check(usage is not None and usage.prompt_tokens == r.usage.prompt_tokens, f"stream usage {usage}")
    log(f"  streaming: {len(text)} characters, usage {usage.model_dump()}")


def first_token_logprobs(server, messages):
    """Streams one agent step as the agent does; returns (usage, the first token's top logprobs)."""
    stream = server.client.chat.completions.create(model=NAMES[0], messages=messages, stream=True, logprobs=True,
                                                   top_logprobs=5, stream_options={"include_usage": True},
                                                   **{**AGENT_PARAMS, "max_tokens": 16})
    first, usage = None, None
    for chunk in stream:
        for c in chunk.choices:
            if first is None and c.logprobs and c.logprobs.content:
                first = {t.token: t.logprob for t in c.logprobs.content[0].top_logprobs}
        if chunk.usage is not None:
            usage = chunk.usage
    check(first is not None and usage is not None, "no logprobs or no usage in the stream")
    return usage, first


@case("three agent steps: each step's cached_tokens covers the previous step's text before its screenshot, "
      "and its first-token logprobs equal a cold server's")
def check_agent_steps(server, cold, binary, model):
    task = "Task: turn on dark mode in Settings."
    answers = [("The home screen is shown; Settings must be opened first.", 'do(action="Launch", app="Settings")'),
               ("Settings is open; Display is the fourth row.", 'do(action="Tap", element=[500,410])')]
    history = [{"role": "system", "content": SYSTEM_PROMPT}]
    previous_before_screenshot = None
    for step in range(3):
        current = user_turn(png_rgba(1080, 2400, step + 1), (task + "\n\n" if step == 0 else "") + screen_info(step + 1))
        messages = history + [current]
        usage, logprobs = first_token_logprobs(server, messages)
        cached = (usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0) or 0
        before = tokens_of(binary, model, rendered_prefix(messages))
        log(f"  step {step + 1}: prompt_tokens {usage.prompt_tokens}, cached_tokens {cached}, "
            f"{before} tokens before its screenshot")
        if previous_before_screenshot is not None:
            check(cached >= previous_before_screenshot,
                  f"step {step + 1}: cached_tokens {cached} < {previous_before_screenshot}, the tokens step {step} "
                  "sent before its screenshot")
            _, cold_logprobs = first_token_logprobs(cold, messages)
            check(set(cold_logprobs) == set(logprobs),
                  f"step {step + 1}: top tokens {sorted(logprobs)} differ from the cold server's {sorted(cold_logprobs)}")
            worst = max(abs(logprobs[t] - cold_logprobs[t]) for t in logprobs)
            check(worst <= LOGPROB_TOLERANCE, f"step {step + 1}: logprobs differ by {worst} from the cold server's")
            log(f"  step {step + 1}: first-token top-5 logprobs within {worst:.2e} of the cold server's")
        previous_before_screenshot = before
        history = history + [strip_images(current)]
        if step < len(answers):
            history.append(answer_turn(*answers[step]))


@case("the same screenshot twice: encoded once (encoder cache), the same answer")
def check_encoder_cache(server):
    # a different system text each time, so the prefix cache cannot serve the image's tokens
    shot = png_rgba(1080, 2400, 9)
    encoded = server.metric("autoglm_images_encoded_total")
    hits = server.metric("autoglm_image_encoder_cache_hits_total")
    answers = []
    for system in ("You operate a phone.", "You operate a phone for the user."):
        messages = [{"role": "system", "content": system}, user_turn(shot, "What is on the screen?")]
        r = server.client.chat.completions.create(model=NAMES[0], messages=messages, max_tokens=12, temperature=0)
        answers.append(r.choices[0].message.content)
    check(server.metric("autoglm_images_encoded_total") == encoded + 1, "the screenshot was encoded twice")
    check(server.metric("autoglm_image_encoder_cache_hits_total") == hits + 1, "no encoder cache hit counted")
    retry = server.client.chat.completions.create(model=NAMES[0], messages=messages, max_tokens=12, temperature=0)
    check(retry.choices[0].message.content == answers[1], "the retried request gave a different answer")


def expect_400(fn, what, param=None):
    try:
        fn()
    except openai.BadRequestError as e:
        body = e.body if isinstance(e.body, dict) else {}
        if param is not None:
            check(body.get("param") == param, f"{what}: param {body.get('param')!r}, expected {param!r}")
        log(f"  {what}: 400 {body.get('message')!r}")
        return
    raise CheckFailed(f"{what}: accepted")


@case("hostile: 11 images, max_pixels above the cap, mm_processor_kwargs of the wrong type -> 400")
def check_hostile(server):
    shot = png_rgba(108, 240, 3)
    eleven = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(shot)}}] * 11 +
               [{"type": "text", "text": "Compare."}]}]
    create = server.client.chat.completions.create
    expect_400(lambda: create(model=NAMES[0], messages=eleven, max_tokens=2), "11 images", "messages[0].content[10].image_url")
    one = [user_turn(shot, "What is this?")]
    expect_400(lambda: create(model=NAMES[0], messages=one, max_tokens=2,
                              extra_body={"mm_processor_kwargs": {"max_pixels": 50_000_000}}),
               "max_pixels 50M", "mm_processor_kwargs.max_pixels")
    expect_400(lambda: create(model=NAMES[0], messages=one, max_tokens=2, extra_body={"mm_processor_kwargs": "big"}),
               "mm_processor_kwargs a string", "mm_processor_kwargs")
    expect_400(lambda: create(model=NAMES[0], messages=one, max_tokens=2,
                              extra_body={"mm_processor_kwargs": {"max_pixels": "5000000"}}),
               "max_pixels a string", "mm_processor_kwargs.max_pixels")


def main():
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} AUTOGLM_DEPLOY_BINARY MODEL", file=sys.stderr)
        return 2
    binary, model = sys.argv[1], sys.argv[2]
    log(f"openai {openai.__version__}; server {binary}; model {model}")
    tmp = tempfile.mkdtemp(prefix="autoglm-open-autoglm-")
    servers = []
    try:
        try:
            warm = Server(binary, model, tmp, "warm")
            servers.append(warm)
            cold = Server(binary, model, tmp, "cold", prefix_cache=False)
            servers.append(cold)
        except CheckFailed as e:
            failures.append(f"startup: {e}")
            log(f"FAIL startup: {e}")
            return 1
        check_names(warm)
        check_agent_request(warm)
        check_agent_steps(warm, cold, binary, model)
        check_encoder_cache(cold)
        check_hostile(warm)
        for s in servers:
            try:
                s.stop()
            except CheckFailed as e:
                failures.append(f"shutdown: {e}")
    finally:
        for s in servers:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        if failures:
            for s in servers:
                log(f"---- {os.path.basename(s.log_path)} ----\n" + s.output().rstrip())
        shutil.rmtree(tmp, ignore_errors=True)
    return summary("all checks passed")


if __name__ == "__main__":
    sys.exit(main())
