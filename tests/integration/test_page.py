"""The preview page, driven in headless Chromium: pick a dataset, move a slider, see the
grid change and the Python snippet follow (and run it); the live table shows a stream."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from augstream import Client
from tests.browser import chromium
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow

ARTIFACTS = Path(os.environ.get("AUGSTREAM_ARTIFACTS", "test-artifacts"))
FETCH_GRID = """
const done = arguments[arguments.length - 1];
fetch(document.getElementById("grid").src)
  .then((r) => r.blob())
  .then((b) => {
    const reader = new FileReader();
    reader.onload = () => done(reader.result.split(",")[1]);
    reader.readAsDataURL(b);
  });
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium()
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_previews_augmentations_and_shows_live_streams(
    browser: object, live_server: LiveServer
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select, WebDriverWait

    assert isinstance(browser, WebDriver)
    driver = browser
    wait = WebDriverWait(driver, 30)
    driver.get(f"{live_server.url}/")

    def grid_version() -> int:
        return int(driver.find_element(By.ID, "grid").get_attribute("data-version") or 0)

    def grid_png() -> bytes:
        return base64.b64decode(driver.execute_async_script(FETCH_GRID))

    wait.until(lambda d: len(Select(d.find_element(By.ID, "dataset")).options) == 2)
    Select(driver.find_element(By.ID, "dataset")).select_by_value("pets")
    wait.until(lambda d: "pets" in d.find_element(By.ID, "snippet").text)
    wait.until(
        lambda d: grid_version() > 0 and "seed 0" in d.find_element(By.ID, "grid-status").text
    )
    before, version = grid_png(), grid_version()
    assert "rotation_range" not in driver.find_element(By.ID, "snippet").text

    # A person drags the rotation slider (a click moves it to the middle) and ticks a flip,
    # then tries two of the operations beyond ImageDataGenerator's.
    driver.find_element(By.NAME, "rotation_range").click()
    driver.find_element(By.NAME, "horizontal_flip").click()
    driver.find_element(By.NAME, "grayscale_probability").click()
    driver.find_element(By.NAME, "blur_sigma_max").click()
    wait.until(lambda d: grid_version() > version)
    after = grid_png()
    assert after != before
    image = cv2.imdecode(np.frombuffer(after, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] > 96 * 3

    snippet = driver.find_element(By.ID, "snippet").text
    assert "rotation_range=9" in snippet and "horizontal_flip=True" in snippet
    assert "grayscale_probability=0.5" in snippet and "blur_sigma_range=(0, 2.5)" in snippet
    # The snippet runs as it is (all but the model.fit line, which needs a model).
    namespace: dict[str, object] = {}
    exec(snippet.replace("model.fit(train, epochs=10)", ""), namespace)
    x, y = namespace["train"][0]  # type: ignore[index]  # a RemoteIterator (a PyDataset)
    assert x.shape == (19, 96, 96, 3) and y.shape == (19, 3)  # pets: 19 images, 3 classes

    # The live table shows a stream while it runs.
    with (
        Client(live_server.url) as client,
        client.stream(dataset="pets", target_size=(16, 16), batch_size=2, seed=1) as stream,
    ):
        next(stream)
        wait.until(lambda d: "pets" in d.find_element(By.CSS_SELECTOR, "#streams tbody").text)
        assert "Batches shared" in driver.find_element(By.ID, "shared").text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "page.png"))
    assert (ARTIFACTS / "page.png").stat().st_size > 10_000


def test_a_server_with_keys_serves_the_page_but_not_its_data(
    browser: object, image_root: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from augstream_service import Settings, create_app
    from augstream_service.background import BackgroundServer

    assert isinstance(browser, WebDriver)
    driver = browser
    wait = WebDriverWait(driver, 30)
    with BackgroundServer(
        create_app(Settings(datasets=[image_root], api_keys=["lab-key"]))
    ) as server:
        driver.get(f"{server.url}/")
        wait.until(lambda d: "API key" in d.find_element(By.ID, "grid-status").text)
        key = driver.find_element(By.ID, "api-key")
        key.send_keys("lab-key", Keys.ENTER)
        key.send_keys(Keys.TAB)  # the change event
        wait.until(lambda d: len(Select(d.find_element(By.ID, "dataset")).options) == 1)
        wait.until(lambda d: d.find_element(By.ID, "grid").get_attribute("data-version"))
