#!/usr/bin/env python3
"""The browser chat in a real browser: headless Chromium driven by Selenium.

    python3 chat_browser_test.py URL SCREENSHOT_PATH

URL is a running switchboard-chat started with --history-messages 8 (the reload case relies
on it). Two browser sessions join one room and talk both ways; one goes offline (the page's
socket is closed and its reconnect held) and comes back with what it missed, in order; a
hostile message is shown as text and never runs; past the room's history the page is told
to reload. Exits non-zero on any failure, including a missing browser, driver or Selenium.
"""
import os
import sys
import time

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as error:
    sys.exit(f"FAIL: selenium is not installed ({error}); deploy/test.sh installs it")
for tool in (CHROMIUM, CHROMEDRIVER):
    if not os.access(tool, os.X_OK):
        sys.exit(f"FAIL: {tool} is missing; install Debian's chromium and chromium-driver")

URL, SCREENSHOT = sys.argv[1], sys.argv[2]
HISTORY = 8  # the server's --history-messages
HOSTILE = '<img src=x onerror="window.__chat.hacked=true"><script>window.__chat.hacked=true</script><b>bold?</b>'


def browser(width, height, phone=False):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(argument)
    if phone:
        # A window cannot be narrower than 500 px; the phone's viewport is emulated.
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1}})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(10)
    return driver


def wait(driver, condition, what, seconds=15):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: condition(d))
    except Exception:
        texts = driver.execute_script("return window.__chat ? window.__chat.texts() : null")
        raise AssertionError(f"timed out waiting for: {what}; page shows {texts}")


def js(driver, script):
    return driver.execute_script("return " + script)


def join(driver, name, room):
    driver.get(URL)
    wait(driver, lambda d: js(d, "window.__chat && window.__chat.status === 'online'"), f"{name}: page online")
    driver.find_element(By.ID, "name-input").send_keys(name)
    room_input = driver.find_element(By.ID, "join-room-input")
    room_input.clear()
    room_input.send_keys(room)
    driver.find_element(By.CSS_SELECTOR, "#join-form button[type=submit]").click()
    wait(driver, lambda d: js(d, "!window.__chat.syncing") and f"{name} (you)" in text_of(d, "member-list"),
         f"{name}: joined {room}")


def say(driver, text):
    box = driver.find_element(By.ID, "text-input")
    wait(driver, lambda d: d.find_element(By.ID, "send-button").is_enabled(), "composer enabled")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def texts(driver):
    return js(driver, "window.__chat.texts()")


def text_of(driver, element_id):
    """textContent: Selenium's .text is empty for what is not visible (the phone's closed drawer)."""
    return js(driver, f"document.getElementById('{element_id}').textContent")


def member_count(driver):
    return text_of(driver, "member-count")


def notices(driver):
    return js(driver, "[...document.querySelectorAll('#messages .notice')].map((n) => n.textContent)")


def sees(driver, text):
    return text in texts(driver)


def check_served_files():
    """The page's own files, each with the security headers, and nothing from elsewhere."""
    import urllib.request
    for path, kind in (("", "text/html"), ("chat.css", "text/css"), ("chat.js", "text/javascript")):
        with urllib.request.urlopen(URL + path, timeout=10) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith(kind), (path, response.headers["Content-Type"])
            policy = response.headers["Content-Security-Policy"] or ""
            assert "default-src 'none'" in policy and "script-src 'self'" in policy, policy
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "://" not in body, f"/{path} refers to another site"


def main():
    check_served_files()
    ada = browser(1100, 760)
    grace = browser(390, 760, phone=True)  # a phone's width
    try:
        room = "lobby"
        join(ada, "Ada", room)
        join(grace, "Grace", room)
        wait(ada, lambda d: member_count(d) == "2", "Ada sees two people here")

        # Both directions.
        say(ada, "Hi Grace! Did the benchmark finish?")
        wait(grace, lambda d: sees(d, "Hi Grace! Did the benchmark finish?"), "Grace receives Ada's message")
        say(grace, "Yes: 1.2M messages/s on two shards.")
        wait(ada, lambda d: sees(d, "Yes: 1.2M messages/s on two shards."), "Ada receives Grace's message")
        # Grace's own message comes back to her from the server too (it is not shown before):
        # going offline earlier would make her recover it as a sixth missed message.
        wait(grace, lambda d: sees(d, "Yes: 1.2M messages/s on two shards."), "Grace's message comes back to her")

        # Grace drops off; Ada's presence list shows it.
        js(grace, "window.__chat.goOffline(), true")
        wait(grace, lambda d: js(d, "window.__chat.status") == "offline", "Grace offline")
        wait(ada, lambda d: member_count(d) == "1", "Ada sees Grace leave")
        missed = ["Grace, you there?", "I'll post the numbers in #bench", HOSTILE, "Back in 5."]
        for text in missed:
            say(ada, text)
        wait(ada, lambda d: texts(d)[-len(missed):] == missed, "Ada sees her messages")

        # Grace comes back: what she missed, in order, once each.
        js(grace, "window.__chat.goOnline(), true")
        wait(grace, lambda d: texts(d)[-len(missed):] == missed, "Grace recovers the missed messages in order")
        wait(ada, lambda d: member_count(d) == "2", "Ada sees Grace back")
        assert texts(grace) == texts(ada), f"same conversation expected:\n{texts(grace)}\n{texts(ada)}"
        offsets = js(grace, "window.__chat.offsets()")
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), f"offsets in order, once each: {offsets}"
        assert "4 messages while you were away (above)" in notices(grace), notices(grace)
        say(grace, "Back! Thanks for catching me up.")
        wait(ada, lambda d: sees(d, "Back! Thanks for catching me up."), "Ada receives Grace's message after the reconnect")

        # The hostile message is text: exactly as typed, no element made, no script run.
        for driver in (ada, grace):
            assert HOSTILE in texts(driver)
            assert js(driver, "document.querySelectorAll('#messages img, #messages script, #messages b').length") == 0
            assert js(driver, "window.__chat.hacked") is False, "the hostile message ran"

        time.sleep(0.3)  # let the last scroll settle for the picture (nothing is waited on)
        os.makedirs(os.path.dirname(os.path.abspath(SCREENSHOT)), exist_ok=True)
        assert ada.save_screenshot(SCREENSHOT), "screenshot"
        phone = SCREENSHOT.replace(".png", "-phone.png")
        assert grace.save_screenshot(phone), "phone screenshot"

        # Away for longer than the room's history: the page is told to reload and shows the
        # latest messages, contiguous.
        js(grace, "window.__chat.goOffline(), true")
        wait(ada, lambda d: member_count(d) == "1", "Ada sees Grace leave again")
        flood = [f"flood {i}" for i in range(1, HISTORY + 3)]
        for text in flood:
            say(ada, text)
        wait(ada, lambda d: texts(d)[-1] == flood[-1], "Ada sees the flood")
        js(grace, "window.__chat.goOnline(), true")
        wait(grace, lambda d: texts(d) and texts(d)[-1] == flood[-1] and not js(d, "window.__chat.syncing"), "Grace reloads")
        assert texts(grace) == flood[-HISTORY:], f"after a reload the latest {HISTORY}: {texts(grace)}"
        assert any("older messages are no longer available" in n for n in notices(grace)), notices(grace)
        print(f"browser chat: OK (screenshots {SCREENSHOT}, {phone})")
    finally:
        ada.quit()
        grace.quit()


if __name__ == "__main__":
    main()
