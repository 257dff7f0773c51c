"""Make the README's dashboard screenshots (docs/img/dashboard-*.png).

``python -m tests.web.readme_shots`` from the repository root: starts the test
federation (conftest.py), runs a few jobs (succeeded, failed, one held for an
approver, a model with its evaluation), and saves the jobs page and the model
report at laptop size, reduced to a 64-colour palette to stay small.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from . import conftest as c

OUT = Path(__file__).resolve().parents[2] / "docs" / "img"


class _Tmp:
    @staticmethod
    def mktemp(name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name))


def _small(src: Path, dst: Path) -> None:
    from PIL import Image

    im = Image.open(src).convert("RGB")
    im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.LANCZOS)
    im.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def main() -> None:
    gen = c.fed.__wrapped__(_Tmp())  # type: ignore[attr-defined]
    fed = next(gen)
    try:
        model = fed.submit("bank", "  - _scores: {}\n  - evaluate: {label_holder: bank}\n")
        fed.wait("bank", model, c.FINAL, 120)
        fed.submit("bank", "  - _echo: {}\n  - _fail: {party: bureau}\n")
        ok = fed.submit("bank", "  - _echo: {}\n")
        fed.wait("bank", ok, c.FINAL, 120)
        fed.submit("bureau", "  - _echo: {}\n")  # held at bank for an approver
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=c.CHROMIUM, args=c.CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 1200, "height": 560})
            page.goto(fed.base["bank"] + "/ui/login")
            page.fill("#token", fed.tokens["bank"]["operator"])
            page.press("#token", "Enter")
            page.wait_for_selector("tr[data-job] [data-state='succeeded']")
            page.wait_for_timeout(1500)
            tmp = Path(tempfile.mkdtemp())
            page.screenshot(path=str(tmp / "jobs.png"))
            page.set_viewport_size({"width": 1200, "height": 1100})
            page.goto(f"{fed.base['bank']}/ui/jobs/{model}/model")
            roc = page.wait_for_selector("#chart-roc svg")
            box = roc.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
            page.screenshot(path=str(tmp / "model.png"))
            b.close()
        _small(tmp / "jobs.png", OUT / "dashboard-jobs.png")
        _small(tmp / "model.png", OUT / "dashboard-model.png")
    finally:
        for _ in gen:
            pass


if __name__ == "__main__":
    main()
