"""The page in a real headless Chromium (Debian's ``chromium``, driven by Playwright
with ``executable_path``; nothing is downloaded): upload a wav, press Convert, get a
playable output ``<audio>``; record from a fake microphone and convert that; a bad
upload shows a message; a tiny training from the Train tab. Screenshots go to
``$VOICECONV_APP_SCREENSHOTS`` (default: a temporary folder, printed), and the time
from the Convert click to the output audio for a 5 s file with the small model is
printed and written to ``convert_timing.json`` there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from app_tiny import TINY_TRAIN, speech_like, write_wav

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("VOICECONV_CHROMIUM", "/usr/bin/chromium")
METADATA_JS = """e => new Promise(resolve => {
    const done = () => resolve([e.readyState, e.duration, e.currentSrc || e.src]);
    if (e.readyState >= 1) done(); else e.addEventListener('loadedmetadata', done, {once: true});
})"""


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("VOICECONV_APP_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(served, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM}: Debian's chromium is not installed (apt-get install chromium; "
                    "scripts/bootstrap.sh installs it)")
    mic = write_wav(tmp_path_factory.mktemp("mic") / "mic.wav", speech_like(6.0, 48000, seed=5), 48000)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}", "--no-sandbox",
        ])
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser, served, run: str, requests: list[str] | None = None):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    if requests is not None:
        page.on("request", lambda req: requests.append(req.url))
    page.goto(served.url)
    page.wait_for_selector("#convert-btn", timeout=60_000)
    choice = page.locator("#run-dd input")
    _until(lambda: choice.input_value() != "", "the runs list to load")
    choice.click()
    choice.fill(run)
    choice.press("Enter")
    _until(lambda: choice.input_value() == run and "->" in page.locator("#direction-dd input").input_value(),
           f"run {run} to be chosen")
    return page


def _until(check, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _one_audio(page, scope: str, timeout_s: float = 120.0):
    """The single ``<audio src>`` inside ``scope`` (Playwright locators pierce shadow DOM),
    once it has stayed single for half a second: while a recording is handed to the player
    the recorder's audio and the player's can both be present for a moment."""
    audio = page.locator(f"{scope} audio[src]")
    since: float | None = None

    def settled() -> bool:
        nonlocal since
        if audio.count() != 1:
            since = None
            return False
        since = since or time.monotonic()
        return time.monotonic() - since >= 0.5

    _until(settled, f"one audio source in {scope}", timeout_s)
    return audio


def _playable(audio) -> tuple[int, float, str]:
    ready, duration, src = audio.evaluate(METADATA_JS)
    assert ready >= 1 and src.startswith("blob:"), (ready, src)
    return ready, float(duration), src


def test_upload_convert_and_play(browser, served, shots):
    five = write_wav(served.inputs / "five_seconds.wav", speech_like(5.0, 22050, seed=11), 22050)
    requests: list[str] = []
    page = _open(browser, served, "small", requests)
    assert page.locator("#direction-dd input").input_value() == "rms -> slt"
    page.locator("#audio-in input[type=file]").set_input_files(str(five))
    _one_audio(page, "#audio-in")
    assert page.locator("#audio-out audio[src]").count() == 0

    start = time.perf_counter()
    page.click("#convert-btn")
    out = _one_audio(page, "#audio-out")
    seconds = time.perf_counter() - start
    _, duration, _ = _playable(out)
    assert abs(duration - 5.0) < 0.05
    info = page.locator("#convert-info")
    _until(lambda: "converted in" in info.inner_text(), "the timing line")
    assert "rms -> slt" in info.inner_text() and "5.0 s of speech" in info.inner_text()
    _until(lambda: page.locator("#mel-in img").count() == 1 and page.locator("#mel-out img").count() == 1,
           "both mel images")
    page.screenshot(path=str(shots / "app_convert.png"), full_page=True)
    elsewhere = [u for u in requests if not u.startswith((served.url, "blob:", "data:"))]
    assert len(requests) > 10 and not elsewhere, elsewhere  # no fonts, analytics, CDNs
    server = float(info.inner_text().split("converted in")[1].split("s")[0])
    warm = []
    for _ in range(2):  # the model is loaded now: what a user sees from the second request on
        again = _open(browser, served, "small")
        again.locator("#audio-in input[type=file]").set_input_files(str(five))
        _one_audio(again, "#audio-in")
        start = time.perf_counter()
        again.click("#convert-btn")
        result = _one_audio(again, "#audio-out")
        warm.append(time.perf_counter() - start)
        assert abs(_playable(result)[1] - 5.0) < 0.05
        again.close()
    timing = {"input_s": 5.0, "model": "maskcyclegan_vc_small (untrained), 22.05 kHz 80-band mels",
              "vocoder": "griffinlim (32 iterations, 100 NNLS)", "server_threads": 1,
              "first_click_to_audio_s (includes loading the checkpoint)": round(seconds, 3),
              "first_server_conversion_s": server, "warm_click_to_audio_s": [round(w, 3) for w in warm]}
    (shots / "convert_timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(f"\nConvert click -> output audio, 5 s file, small model: first {seconds:.2f} s (server "
          f"conversion {server:.2f} s), then {', '.join(f'{w:.2f}' for w in warm)} s; screenshots in {shots}")
    page.close()


def test_record_from_fake_microphone_and_convert(browser, served, shots):
    page = _open(browser, served, "tiny")
    page.locator("#audio-in button[aria-label='Record audio']").click()
    page.locator("#audio-in button.record-button").click()
    time.sleep(2.5)
    page.locator("#audio-in button.stop-button").click()
    _, recorded, _ = _playable(_one_audio(page, "#audio-in"))
    assert recorded > 1.5
    page.click("#convert-btn")
    _, duration, _ = _playable(_one_audio(page, "#audio-out"))
    assert abs(duration - recorded) < 0.1
    _until(lambda: "converted in" in page.locator("#convert-info").inner_text(), "the timing line")
    page.screenshot(path=str(shots / "app_record.png"), full_page=True)
    page.close()


def test_bad_upload_shows_a_message_and_the_page_keeps_working(browser, served, shots):
    bad = served.inputs / "garbage_upload.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(200))
    page = _open(browser, served, "tiny")
    page.locator("#audio-in input[type=file]").set_input_files(str(bad))
    time.sleep(1.0)
    page.click("#convert-btn")
    toast = page.locator("[data-testid='toast-text']")
    toast.first.wait_for(timeout=60_000)
    text = toast.first.inner_text()
    assert "garbage_upload.wav: " in text and "corrupt" in text, text
    page.screenshot(path=str(shots / "app_error.png"), full_page=True)
    assert page.locator("#audio-out audio[src]").count() == 0

    good = write_wav(served.inputs / "after_error.wav", speech_like(1.0, 8000), 8000)
    page.locator("#audio-in button[aria-label='Clear']").first.click()
    page.locator("#audio-in input[type=file]").set_input_files(str(good))
    _one_audio(page, "#audio-in")
    page.click("#convert-btn")
    _, duration, _ = _playable(_one_audio(page, "#audio-out"))
    assert abs(duration - 1.0) < 0.05
    page.close()


def test_train_tab_runs_a_tiny_training_with_progress(browser, served, shots):
    page = _open(browser, served, "tiny")
    page.get_by_role("tab", name="Train").click()
    page.locator("#run-name textarea, #run-name input").first.fill("browser_run")
    page.locator("#train-steps input").fill("4")
    page.locator("#a-dir textarea, #a-dir input").first.fill(str(served.data / "low"))
    page.locator("#b-dir textarea, #b-dir input").first.fill(str(served.data / "high"))
    page.get_by_text("Advanced: Hydra overrides").click()
    page.locator("#train-overrides textarea").fill("\n".join(TINY_TRAIN))
    page.click("#train-btn")
    progress = page.locator("#train-progress")
    _until(lambda: "finished" in progress.inner_text(), "the training to finish", 180)
    assert "browser_run" in progress.inner_text() and "step 4/4" in progress.inner_text()
    _until(lambda: "g_total" in page.locator("#loss-plot").inner_text(), "the loss plot's legend")
    page.screenshot(path=str(shots / "app_train.png"), full_page=True)
    assert (served.runs / "browser_run" / "checkpoints" / "last.ckpt").is_file()
    page.close()
