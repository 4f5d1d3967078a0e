#!/usr/bin/env python3
"""The operator's page (/ui/) in a real browser: headless Chromium, driven over the
DevTools protocol.

Run by `tests/api/ui.rs`, which starts the real binary with a token and plants two
sessions on disk with a title and tags (one title is HTML); this script does the rest
through the API and the page. Python's standard library only: Chromium speaks the protocol over two pipes
(`--remote-debugging-pipe`: fd 3 in, fd 4 out, NUL-separated JSON), so no WebDriver,
no websocket client, nothing from PyPI.

Environment: BASE_URL (http://127.0.0.1:PORT), TOKEN, CLAUDE_CONFIG_DIR (the service's
--claude-config-dir, where a transcript is written as the CLI writes it), SCREENSHOTS
(a directory), CHROMIUM (optional: the browser to run). Exit status: 0 passed, 1 failed, 77 skipped
(no Chromium here), with the reason on stdout.
"""

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

BASE = os.environ["BASE_URL"].rstrip("/")
TOKEN = os.environ["TOKEN"]
SHOTS = os.environ["SCREENSHOTS"]
HOSTILE_TITLE = "<img src=x onerror=alert(1)>"
HOSTILE_PERSONA = "<script>alert(2)</script>"
HOSTILE_MESSAGE = "Done. <img src=y onerror=alert(3)> is what the page showed."
SKIPPED = 77


class Failure(Exception):
    pass


def log(message):
    print(f"[{time.monotonic() - STARTED:6.2f}s] {message}", flush=True)


STARTED = time.monotonic()


# ---- The API, as curl would call it


def api(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def must(method, path, body=None, status=(200, 201, 204)):
    got, answer = api(method, path, body)
    if got not in status:
        raise Failure(f"{method} {path}: {got} {answer}")
    return answer


# ---- Chromium over the DevTools protocol


def find_chromium():
    for name in filter(None, [os.environ.get("CHROMIUM"), "chromium", "chromium-browser",
                              "google-chrome", "google-chrome-stable"]):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium, its pipes, and the events it sent that nobody waited for."""

    def __init__(self, binary, profile):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # Above the descriptors a shell redirection may clobber, so that `3<&R 4>&W`
        # cannot close one end while placing the other.
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        args = [
            binary, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}",
            # The page under test is the service's own; the sandbox needs kernel features
            # a CI container often lacks, and refuses to run as root.
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--hide-scrollbars", "--mute-audio",
            "--force-color-profile=srgb", "about:blank",
        ]
        self.stderr = open(os.path.join(profile, "chromium.log"), "wb")
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{high_r} 4>&{high_w} {high_r}<&- {high_w}>&-',
             "bash", *args],
            pass_fds=(high_r, high_w), stdin=subprocess.DEVNULL,
            stdout=self.stderr, stderr=self.stderr,
        )
        os.close(high_r)
        os.close(high_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        return self.next_id

    def call(self, method, params=None, session=None, timeout=10):
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(deadline)
            if message is None:
                raise Failure(f"{method}: no answer within {timeout}s")
            if message.get("id") == wanted:
                if "error" in message:
                    raise Failure(f"{method}: {message['error']}")
                return message.get("result", {})

    def receive(self, deadline):
        """The next message, or None at the deadline; events are also kept in `events`."""
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                return None
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise Failure("Chromium closed its pipe (see chromium.log in the profile)")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
            self.on_event(message)
        return message

    def on_event(self, message):
        pass

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while self.receive(deadline) is not None:
            pass

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


class Page:
    """A tab: evaluate, wait, click and type as a user would, take screenshots."""

    def __init__(self, browser):
        self.browser = browser
        self.problems = []
        browser.on_event = self.on_event
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method, params=None, timeout=10):
        return self.browser.call(method, params, self.session, timeout)

    def on_event(self, message):
        method, params = message["method"], message.get("params", {})
        if method == "Page.javascriptDialogOpening":
            self.problems.append(f"a dialog opened: {params.get('type')} {params.get('message')!r}")
            self.browser.send("Page.handleJavaScriptDialog", {"accept": False}, self.session)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.problems.append(f"an exception in the page: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if "Content Security Policy" in entry.get("text", ""):
                self.problems.append(f"a CSP violation: {entry['text']}")

    def eval(self, expression):
        result = self.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise Failure(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression, what, timeout=5.0):
        """Polls `expression` until it is truthy; its value and how long it took."""
        start = time.monotonic()
        while True:
            value = self.eval(expression)
            if value:
                return value, time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise Failure(f"{what}: not within {timeout}s ({expression})")
            self.browser.pump(0.02)

    def navigate(self, url):
        self.call("Page.navigate", {"url": url})
        self.wait("document.readyState === 'complete'", f"load {url}")

    def click(self, selector):
        """A real click: the mouse pressed and released over the element's centre."""
        box = self.eval(f"""(() => {{
            const node = document.querySelector({json.dumps(selector)});
            if (!node) return null;
            node.scrollIntoView({{block: 'center'}});
            const r = node.getBoundingClientRect();
            return {{x: r.x + r.width / 2, y: r.y + r.height / 2}};
        }})()""")
        if not box:
            raise Failure(f"nothing to click at {selector}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {
                "type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1})

    def type(self, selector, text):
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", {"text": text})

    def press_enter(self):
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", {
                "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                **({"text": "\r"} if kind == "keyDown" else {})})

    def viewport(self, width, height, mobile=False, scale=1):
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})

    def color_scheme(self, scheme):
        self.call("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": scheme}]})

    def screenshot(self, name):
        self.browser.pump(0.1)
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path = os.path.join(SHOTS, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        log(f"screenshot {path}")


# ---- The scenario


def text_of(selector):
    return f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent"


def row(name):
    return f'#rows tr[data-name="{name}"]'


def set_up_sessions():
    """Sessions as the bot would leave them: personas, a conversation, costs, budgets."""
    must("POST", "/sessions", {"name": "homelab"})
    must("POST", "/sessions", {"name": "ideas", "persona": "brainstorm"})
    must("POST", "/sessions", {"name": "review", "persona": {
        "name": HOSTILE_PERSONA, "description": "Reviews the operator's diffs",
        "system_prompt": "Review the change; say what could break.",
        "settings": {"model": "claude-sonnet-4-20250514", "max_turns": 10}}})
    conversation = str(uuid.uuid4())
    must("POST", "/sessions/homelab/conversations", {
        "type": "system", "subtype": "init", "session_id": conversation,
        "model": "claude-sonnet-4-20250514"})
    for name, cost, budget in (("homelab", 1.25, 5), ("ideas", 0.93, 1)):
        must("POST", f"/sessions/{name}/usage", {
            "type": "result", "uuid": f"{name}-1", "num_turns": 4, "total_cost_usd": cost,
            "usage": {"input_tokens": 1200, "output_tokens": 800}})
        must("PATCH", f"/sessions/{name}", {"budget_usd": budget})
    must("PUT", "/sessions/active", {"name": "homelab"})
    write_transcript(must("GET", "/sessions/homelab")["dir"], conversation)
    return conversation


def write_transcript(session_dir, conversation):
    """Two messages of homelab's conversation, where the CLI keeps them."""
    slug = re.sub("[^A-Za-z0-9]", "-", session_dir)
    folder = os.path.join(os.environ["CLAUDE_CONFIG_DIR"], "projects", slug)
    os.makedirs(folder, exist_ok=True)
    lines = [
        {"type": "user", "uuid": "u1", "timestamp": "2026-11-24T21:22:16.000Z",
         "sessionId": conversation,
         "message": {"role": "user", "content": "Which containers are unhealthy?"}},
        {"type": "assistant", "uuid": "a1", "timestamp": "2026-11-24T21:22:19.000Z",
         "sessionId": conversation,
         "message": {"id": "msg_1", "type": "message", "role": "assistant",
                     "content": [{"type": "text", "text": HOSTILE_MESSAGE},
                                 {"type": "tool_use", "id": "t1", "name": "Bash",
                                  "input": {"command": "docker ps"}}]}},
    ]
    with open(os.path.join(folder, f"{conversation}.jsonl"), "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)


def scenario(page):
    conversation = set_up_sessions()

    page.viewport(1280, 900)
    page.navigate(BASE + "/")
    url = page.eval("location.pathname")
    if url != "/ui/":
        raise Failure(f"/ should lead to /ui/, the page is at {url}")

    # The token, asked for once and kept for the tab.
    page.wait("!document.getElementById('login').hidden", "the token prompt")
    page.type("#token", TOKEN)
    page.press_enter()
    _, took = page.wait("document.querySelectorAll('#rows tr').length === 5", "five sessions")
    log(f"sessions shown {took:.2f}s after the token")
    stored = page.eval("sessionStorage.getItem('session-manager.token')")
    if stored != TOKEN or page.eval("document.cookie") != "":
        raise Failure("the token is kept in sessionStorage, and in no cookie")
    names = page.eval("[...document.querySelectorAll('#rows tr')].map(r => r.dataset.name)")
    log(f"rows: {names}")
    if page.eval(text_of(f"{row('homelab')} .chip.current")) != "current":
        raise Failure("homelab is current, and marked so")
    page.wait(f"!!document.querySelector('#feed.live')", "the feed is live")

    # Values from the store are text, never markup.
    title = page.eval(text_of(f"{row('hostile')} td.title"))
    if title != HOSTILE_TITLE:
        raise Failure(f"the hostile title shows as {title!r}")
    tags = page.eval(f"[...document.querySelectorAll('{row('backups')} .chip')].map(c => c.textContent)")
    if tags != ["backup", "nas"]:
        raise Failure(f"the tags of backups show as {tags!r}")
    if page.eval("document.images.length + document.querySelectorAll('script:not([src])').length"):
        raise Failure("a value from the store became an element")

    # Switching by clicking; the feed brings the answer to every copy of the page.
    page.click(f"{row('ideas')} button.switch")
    _, took = page.wait(f"!!document.querySelector('{row('ideas')}.current')", "ideas current")
    log(f"switched by a click in {took:.2f}s")
    if must("GET", "/sessions/active")["active"] != "ideas":
        raise Failure("the click did not switch")

    # A session created elsewhere appears without a reload.
    page.eval("window.notReloaded = true")
    started = time.monotonic()
    must("POST", "/sessions", {"name": "fresh", "persona": "planner"})
    _, took = page.wait(f"!!document.querySelector('{row('fresh')}')", "fresh appears", timeout=1.0)
    took = time.monotonic() - started
    if not page.eval("window.notReloaded === true"):
        raise Failure("the page reloaded")
    log(f"a session created over HTTP appeared in {took:.3f}s, without a reload")

    # One session's panel: metadata, persona, launch line, conversations, transcript.
    page.click(f"{row('homelab')} button.open")
    page.wait(text_of("#p-persona strong") + " === 'Homelab Assistant'", "homelab's persona")
    launch, _ = page.wait(text_of("#p-launch pre.launch"), "homelab's launch line")
    if "--resume" not in launch or conversation not in launch or not launch.startswith("cd "):
        raise Failure(f"launch line {launch!r}")
    page.wait(f"({text_of('#p-conversations')} || '').includes('{conversation}')", "the conversation")
    page.wait(f"document.querySelectorAll('#p-transcript li').length === 2", "the transcript")
    said = page.eval("[...document.querySelectorAll('#p-transcript pre')].map(p => p.textContent)")
    if said != ["Which containers are unhealthy?", HOSTILE_MESSAGE]:
        raise Failure(f"the transcript shows {said!r}")
    log(f"panel: launch {launch[:60]!r}…; transcript {said!r}")
    page.eval("window.scrollTo(0, 0)")
    page.screenshot("desktop.png")
    page.color_scheme("dark")
    page.screenshot("desktop-dark.png")
    page.color_scheme("light")

    # A title and tags, saved from the panel and shown in the table.
    page.type("#p-title-value", "DNS resolver rework")
    page.click("#p-title button")
    page.wait(f"{text_of(row('homelab') + ' td.title')} === 'DNS resolver rework'",
              "the new title in the table")
    page.type("#p-tags-value", "dns, homelab")
    page.click("#p-tags button")
    page.wait(f"[...document.querySelectorAll('{row('homelab')} .chip')].map(c => c.textContent)"
              ".join() === 'dns,homelab'", "the new tags in the table")
    stored = must("GET", "/sessions/homelab")
    if stored.get("title") != "DNS resolver rework" or stored.get("tags") != ["dns", "homelab"]:
        raise Failure(f"the title and tags stored: {stored.get('title')!r} {stored.get('tags')!r}")

    # Archiving asks twice, then the session leaves the table for the archive, and
    # comes back from it.
    page.click(f"{row('fresh')} button.open")
    page.wait(text_of("#p-name") + " === 'fresh'", "fresh's panel")
    page.click("#p-archive")
    page.click("#p-archive")
    page.wait(f"!document.querySelector('{row('fresh')}')", "fresh archived")
    if api("GET", "/sessions/fresh")[0] != 404:
        raise Failure("the page's archive did not delete the session")
    restore = '#archive-list li[data-name="fresh"] button'
    page.wait(f"!!document.querySelector('{restore}')", "fresh in the archive")
    page.click(restore)
    page.wait(f"!!document.querySelector('{row('fresh')}')", "fresh restored")
    page.wait(f"!document.querySelector('{restore}')", "fresh gone from the archive")
    must("GET", "/sessions/fresh")

    # The hostile persona name, as text in the panel.
    page.click(f"{row('review')} button.open")
    page.wait(f"{text_of('#p-persona strong')} === {json.dumps(HOSTILE_PERSONA)}",
              "review's persona name, as text")

    # A phone.
    page.click("#p-close")
    page.viewport(390, 844, mobile=True, scale=2)
    page.eval("window.scrollTo(0, 0)")
    page.wait("document.querySelector('#panel').hidden", "the panel closed")
    width = page.eval("document.documentElement.scrollWidth")
    if width > 390:
        raise Failure(f"the phone page is {width}px wide, wider than the phone")
    page.screenshot("phone.png")
    page.click(f"{row('homelab')} button.open")
    page.wait(text_of("#p-persona strong") + " === 'Homelab Assistant'", "homelab's panel on a phone")
    page.screenshot("phone-panel.png")

    if page.eval("document.images.length"):
        raise Failure("an img element appeared")


def main():
    chromium = find_chromium()
    if not chromium:
        print("skipped: no Chromium found (install Debian's `chromium`, or set CHROMIUM)")
        return SKIPPED
    os.makedirs(SHOTS, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ui-test-") as profile:
        browser = Browser(chromium, profile)
        try:
            version = browser.call("Browser.getVersion", timeout=30)["product"]
            log(f"{version} at {chromium}")
            page = Page(browser)
            scenario(page)
            browser.pump(0.2)
            if page.problems:
                raise Failure("; ".join(page.problems))
        except Failure as failure:
            print(f"FAILED: {failure}")
            with open(os.path.join(profile, "chromium.log"), "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            print(f"chromium's log ends with:\n{tail}")
            return 1
        finally:
            browser.close()
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
