"""A buyer in a real browser (Debian's Chromium, driven by selenium) against make run's stack.

page: create a page payment (signed), open its URL, see the simulator's cashier with the amount
and the Chinese subject, press Pay, land on the return_url (the demo shop), and find the payment
PAID through the API. wap: the same through the mobile cashier. qr: open the QR code's page (what
the buyer's phone opens after scanning), press Pay, find it PAID. Screenshots go to STATE_DIR.

Usage: browser.py STATE_DIR
"""

import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sigv4 import endpoints, session

# Without the background-networking flags Chromium tries Google's hosts, which this closed
# network refuses; a fresh profile keeps runs independent.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1000,800"]
SUBJECT = "会员 Pro 年费 · 测试"


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def wait_paid(api, signed, no):
    for _ in range(100):
        payment = signed.get(f"{api}/payments/{no}", timeout=30).json()
        if payment.get("status") == "PAID":
            return payment
        time.sleep(0.1)
    raise AssertionError(f"{no} never became PAID: {payment}")


def main():
    state = sys.argv[1]
    local = endpoints(state)
    api, shop = local["api_base_url"], local["shop_url"]
    signed = session(local)
    stamp = int(time.time() * 1000)
    results = []
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        try:
            for channel in ("page", "wap", "qr"):
                no = f"browser_{channel}_{stamp}"
                body = {"out_trade_no": no, "amount": "88.80", "subject": SUBJECT, "channel": channel}
                if channel != "qr":
                    body["return_url"] = f"{shop}/orders/{no}"
                created = signed.post(f"{api}/payments", json=body, timeout=30)
                expect(created.status_code == 201, f"{channel}: create answered {created.status_code} {created.text}")
                step = created.json()["next_step"]
                url = step["url"] if channel != "qr" else step["qr_code"]

                driver.get(url)
                WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.TAG_NAME, "button"))
                text = driver.find_element(By.TAG_NAME, "body").text
                expect("¥88.80" in text, f"{channel}: the cashier does not show ¥88.80: {text[:300]}")
                expect(SUBJECT in text, f"{channel}: the cashier does not show the subject: {text[:300]}")
                cashier_shot = os.path.join(state, f"browser-{channel}-cashier.png")
                driver.save_screenshot(cashier_shot)

                driver.find_element(By.TAG_NAME, "button").click()
                if channel != "qr":
                    WebDriverWait(driver, 20).until(lambda d: d.current_url.startswith(f"{shop}/orders/{no}"))
                    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "status"))
                    landed = driver.find_element(By.TAG_NAME, "body").text
                    expect(no in landed, f"{channel}: the return page does not name the order: {landed}")
                    # Alipay's return parameters ride on the URL, signed (the shop does not trust them).
                    expect("sign=" in driver.current_url and "out_trade_no=" in driver.current_url,
                           f"{channel}: no signed return parameters: {driver.current_url}")
                else:
                    time.sleep(0.5)
                return_shot = os.path.join(state, f"browser-{channel}-after-pay.png")
                driver.save_screenshot(return_shot)

                payment = wait_paid(api, signed, no)
                expect(payment["amount"] == "88.80" and payment["trade_no"], f"{channel}: {payment}")
                shown = driver.find_element(By.TAG_NAME, "body").text.replace("\n", " ")
                results.append(f"{channel}: cashier showed ¥88.80 and the subject; after Pay: "
                               f"{driver.current_url.split('?')[0]} showing {shown[:90]!r}; API: PAID "
                               f"trade_no {payment['trade_no']} ({cashier_shot}, {return_shot})")
        finally:
            driver.quit()
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
