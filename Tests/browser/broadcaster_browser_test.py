#!/usr/bin/env python3
"""The broadcaster protocol from a real browser: headless Chromium driven by Selenium.

    python3 broadcaster_browser_test.py http://127.0.0.1:PORT/broadcaster SECRET API_KEY

Opens Tests/browser/broadcaster_page.html (a file: URL) whose script uses the browser's native
WebSocket to `auth` (an HS256 token made here), `subscribe` to test-channel and to a channel
the token does not authorize; then this script publishes over REST and the page must show the
broadcast with the reference's fields, and the forbidden subscribe must have failed with the
reference's code (Unauthenticated). Exits non-zero on any failure, including a missing browser,
driver or Selenium (deploy/lib.sh ensure_browser_tools installs them).
"""
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.request
from urllib.parse import quote

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as error:
    sys.exit(f"FAIL: selenium is not installed ({error}); deploy/lib.sh ensure_browser_tools installs it")
for tool in (CHROMIUM, CHROMEDRIVER):
    if not os.access(tool, os.X_OK):
        sys.exit(f"FAIL: {tool} is missing; install Debian's chromium and chromium-driver (ensure_browser_tools)")

HTTP, SECRET, API_KEY = sys.argv[1:4]
WS = "ws" + HTTP[len("http"):] + "/websocket"
PAGE = "file://" + os.path.join(os.path.dirname(os.path.abspath(__file__)), "broadcaster_page.html")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + str(detail)))
    if not ok:
        failures.append(name)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token():
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": "browser-user", "exp": now + 600, "iat": now, "aud": "broadcaster",
                             "authorizedChannels": ["test-channel"], "scope": ["subscribe"]}).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


def state(driver):
    return driver.execute_script("return window.__bc")


def wait(driver, condition, what, seconds=20):
    try:
        WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: condition(state(d)))
        return state(driver)
    except Exception:
        raise AssertionError(f"timed out waiting for: {what}; page state {state(driver)}")


options = webdriver.ChromeOptions()
options.binary_location = CHROMIUM
for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--allow-file-access-from-files"):
    options.add_argument(argument)
driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
try:
    driver.get(f"{PAGE}#ws={quote(WS, safe='')}&token={token()}&channel=test-channel&forbidden=other-channel")
    print("browser:", driver.capabilities.get("browserName"), driver.capabilities.get("browserVersion"))
    s = wait(driver, lambda s: s and "1" in s["replies"] and "2" in s["replies"] and "3" in s["replies"], "three replies")
    check("auth succeeds", s["replies"]["1"] == {"requestId": 1, "result": {"success": True}}, s["replies"]["1"])
    sub = s["replies"]["2"].get("result", {})
    check("subscribe answers subscriptionId and an RFC 3339 timestamp",
          isinstance(sub.get("subscriptionId"), str) and sub["subscriptionId"] and RFC3339.match(sub.get("timestamp", "")), sub)
    check("unauthorized channel: Unauthenticated, as the reference",
          s["replies"]["3"] == {"requestId": 3, "error": {"code": "Unauthenticated", "message": "user not authorized to access this channel"}},
          s["replies"]["3"])

    body = {"channel": "test-channel", "event": "browser-event", "payload": {"text": "<b>hi</b>", "n": 7}}
    request = urllib.request.Request(HTTP + "/publish", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": "Bearer " + API_KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        published = json.loads(response.read())
        check("REST publish is 200", response.status == 200, response.status)
    s = wait(driver, lambda s: len(s["broadcasts"]) >= 1, "the broadcast")
    b = s["broadcasts"][0]
    check("broadcast fields", b.get("channel") == "test-channel" and b.get("event") == "browser-event"
          and b.get("payload") == {"text": "<b>hi</b>", "n": 7} and b.get("seq") == 1
          and b.get("id") == published.get("id") and RFC3339.match(b.get("createTime", "")), b)
    shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#log li.broadcast")]
    check("the page shows it (as text)", shown == ['test-channel browser-event {"text":"<b>hi</b>","n":7}'], shown)
    time.sleep(0.3)  # a second, unexpected broadcast would arrive within this
    check("exactly one broadcast", len(state(driver)["broadcasts"]) == 1, state(driver)["broadcasts"])
    check("the socket is still open", state(driver)["state"] == "subscribed", state(driver)["state"])
finally:
    driver.quit()
print(f"{8 - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
