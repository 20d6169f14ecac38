"""The headless-browser helper itself: what it reports of a clean page, of a page that errs and reaches out, and of a
blank figure."""

import base64
import io
import time

import pytest
from PIL import Image, ImageDraw

from . import browser

if browser.chromium() is None:
    pytest.skip("no chromium or chromium-browser on PATH", allow_module_level=True)


def png_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def gradient() -> Image.Image:
    img = Image.new("RGB", (240, 120))
    draw = ImageDraw.Draw(img)
    for x in range(240):
        draw.line([(x, 0), (x, 119)], fill=(x, 60, 255 - x))
    return img


def page(tmp_path, body: str):
    path = tmp_path / "report.html"
    path.write_text(f"<!doctype html><html><head><meta charset=utf-8><title>t</title></head><body>{body}</body></html>")
    return path


def test_a_clean_self_contained_page(tmp_path):
    path = page(
        tmp_path, f'<h1>Benchmark report</h1><p>All 3 boards passed.</p><img alt="latency" src="{png_uri(gradient())}">'
    )
    started = time.monotonic()
    loaded = browser.load(path, timeout=30)
    assert time.monotonic() - started < 20
    assert loaded.load_fired
    assert loaded.console_errors == []
    assert loaded.requests == []
    assert "Benchmark report" in loaded.text and "All 3 boards passed." in loaded.text
    [image] = loaded.images
    assert image["alt"] == "latency"
    assert image["src_prefix"].startswith("data:image/png;base64,")
    assert image["complete"] and image["naturalWidth"] == 240 and image["naturalHeight"] == 120
    [shot] = loaded.image_shots
    assert Image.open(io.BytesIO(shot)).size == (240, 120)
    assert not browser.blank(shot)
    assert not browser.blank(loaded.screenshot)
    assert Image.open(io.BytesIO(loaded.screenshot)).width == 1280


def test_errors_and_outside_requests_are_caught(tmp_path):
    path = page(
        tmp_path,
        '<link rel=stylesheet href="https://cdn.example.invalid/a.css">'
        "<p>still here</p>"
        '<script>console.error("boom")</script>'
        '<script>throw new Error("kaput")</script>'
        '<img alt="remote" src="http://192.0.2.1/x.png">',
    )
    started = time.monotonic()
    loaded = browser.load(path, timeout=30)
    assert time.monotonic() - started < 20
    errors = "\n".join(loaded.console_errors)
    assert "boom" in errors and "kaput" in errors
    assert "http://192.0.2.1/x.png" in loaded.requests
    assert "https://cdn.example.invalid/a.css" in loaded.requests
    [image] = loaded.images
    assert image["naturalWidth"] == 0
    assert "still here" in loaded.text


def test_a_blank_figure_is_seen_as_blank(tmp_path):
    white = png_uri(Image.new("RGB", (200, 100), "white"))
    path = page(tmp_path, f'<p>figure:</p><img alt="empty" src="{white}">')
    loaded = browser.load(path, timeout=30)
    [image] = loaded.images
    assert image["complete"] and image["naturalWidth"] == 200
    [shot] = loaded.image_shots
    assert browser.blank(shot)
    assert not browser.blank(loaded.screenshot)  # the caption is there


def test_blank_on_images_made_here():
    def png(img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    assert browser.blank(png(Image.new("RGB", (50, 50), (12, 34, 56))))
    assert browser.blank(png(Image.new("RGBA", (50, 50), (0, 0, 0, 0))))
    assert not browser.blank(png(gradient()))
    line = Image.new("RGB", (200, 100), "white")
    ImageDraw.Draw(line).line([(0, 90), (199, 10)], fill="black")
    assert not browser.blank(png(line))
