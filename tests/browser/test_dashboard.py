"""The broker's dashboard in a real browser (headless Chromium over WebDriver).

Each test starts a real `flagpost serve` on loopback ports of its own, opens
the dashboard at the broker's HTTP address, sends notifications with the
real `flagpost notify` and watches the page. Run by tests/browser/run.sh.
"""

import os
import pathlib
import queue
import shutil
import subprocess
import threading
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
FLAGPOST = os.environ.get("FLAGPOST_BIN", str(TARGET / "debug" / "flagpost"))
# the broker refuses FLAGPOST_* variables it does not know (FLAGPOST_BIN)
ENV = {k: v for k, v in os.environ.items() if not k.startswith("FLAGPOST_")}


class Broker:
    """A `flagpost serve` process on loopback; its addresses as it announced them."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [FLAGPOST, "serve", "--bind", "127.0.0.1:0", "--metrics", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=ENV,
        )
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.addr = self.http = None
        deadline = time.monotonic() + 20
        while self.http is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic())).strip()
            if line.startswith("listening on "):
                self.addr = line.removeprefix("listening on ")
            elif line.startswith("http on "):
                self.http = line.removeprefix("http on ")
        assert self.addr, "serve announced no broker address"

    def notify(self, kind, *args):
        subprocess.run(
            [FLAGPOST, "notify", kind, "--broker", self.addr, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            env=ENV,
        )

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,960"):
        options.add_argument(arg)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    yield driver
    driver.quit()


def raises(driver, flag):
    """The raise rows on the page that carry `flag` (for a flag other than
    `reconnect`, not counting the reconnect raise, which carries every flag)."""
    rows = []
    for r in driver.find_elements(By.CSS_SELECTOR, "#raises tr.raise"):
        flags = r.get_attribute("data-flags").split()
        if flag in flags and (flag == "reconnect" or "reconnect" not in flags):
            rows.append(r)
    return rows


def wait_live(driver):
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "stream-state").get_attribute("class") == "live")
    # the stream's first event is the reconnect raise (a re-check after connecting)
    WebDriverWait(driver, 10).until(lambda d: raises(d, "reconnect"))


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.stop()


def test_a_notification_appears_within_a_second(browser, broker):
    browser.get(broker.http)
    wait_live(browser)
    assert not raises(browser, "status")
    sent = time.monotonic()
    broker.notify("status")
    WebDriverWait(browser, 1.0, poll_frequency=0.02).until(lambda d: raises(d, "status"))
    seen = time.monotonic() - sent
    print(f"status raise on the page {seen * 1000:.0f} ms after `flagpost notify` started")
    assert seen < 1.0
    # the statistics side: this page's own stream is a listener, and the next
    # poll (every second) shows the status datagram as a rate
    WebDriverWait(browser, 5).until(
        lambda d: d.find_element(By.ID, "listeners").text not in ("–", "0"))
    WebDriverWait(browser, 5).until(
        lambda d: d.find_element(By.ID, "rate-status").text not in ("–", "0.0"))
    screenshot(browser, broker)


def test_a_keyed_broker_asks_for_the_token(browser, tmp_path):
    key = tmp_path / "key"
    subprocess.run([FLAGPOST, "keygen", str(key)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=ENV)
    token = subprocess.run([FLAGPOST, "http-token", "--key-file", str(key)], check=True,
                           capture_output=True, text=True, env=ENV).stdout.strip()
    assert token
    keyed = Broker("--key-file", str(key))
    try:
        browser.get(keyed.http)
        form = WebDriverWait(browser, 10).until(
            lambda d: d.find_element(By.ID, "auth").is_displayed() and d.find_element(By.ID, "token"))
        assert browser.find_element(By.ID, "stream-state").get_attribute("class") == "down"
        form.send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#auth-form button").click()
        wait_live(browser)
        keyed.notify("non-status", "--key-file", str(key))
        WebDriverWait(browser, 5).until(lambda d: raises(d, "non_status"))
    finally:
        keyed.stop()


def screenshot(driver, broker):
    """Saves the page, after some traffic of each kind for the chart (longer
    with FLAGPOST_SCREENSHOT=docs, which writes the README's picture)."""
    for_docs = os.environ.get("FLAGPOST_SCREENSHOT") == "docs"
    seconds = 20 if for_docs else 3
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        broker.notify("status", "--count", str(1 + i % 4))
        if i % 3 == 0:
            broker.notify("non-status")
        if i % 10 == 0:
            broker.notify("channel-update", "--channel", "GSM1")
        i += 1
        time.sleep(0.1)  # pacing the traffic for the chart, not synchronisation
    # every kind sent shows in the chart's history (rates from /stats.json)
    for kind in ("delivered", "status", "non_status", "channel_update"):
        assert browser_max_rate(driver, kind) > 0, f"no {kind} rate on the chart"
    out = ROOT / "docs" / "dashboard.png" if for_docs else TARGET / "browser" / "dashboard.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(out)), "screenshot not written"
    assert out.stat().st_size > 10_000, "screenshot is empty"
    print(f"screenshot: {out}")


def browser_max_rate(driver, kind):
    """The highest rate of `kind` in the page's chart history."""
    return driver.execute_script(
        "return Math.max(0, ...history.map(p => p.rates[arguments[0]]));", kind)
