"""The dashboard in a real Chromium against two running nodes (see conftest.py).

Each test logs in through the login page with a role's token; the viewer fixture
fails a test whose page made any request outside its node.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .conftest import Fed

ECHO = "  - _echo: {}\n"
FINAL_OK = {"succeeded"}


def test_login_then_a_job_reaches_succeeded_live(
    viewer: Any, fed: Fed, jobs: dict[str, str]
) -> None:
    v = viewer("bank", "operator")
    assert v.page.url.endswith("/ui/jobs")
    assert v.page.text_content("#whoami") == "role operator"
    v.page.evaluate("window.__sameDocument = 42")  # gone if the page reloads
    job_id = fed.submit("bank", ECHO)
    row = f"tr[data-job='{job_id}']"
    v.page.wait_for_selector(f"{row} [data-state='succeeded']", timeout=60_000)
    assert v.page.evaluate("window.__sameDocument") == 42
    # times in the viewer's time zone (the context runs in Asia/Tokyo), with the zone named
    assert "GMT+9" in v.page.text_content(f"{row} time")
    assert "Asia/Tokyo" in v.page.text_content("#tz")
    # filters
    v.page.select_option("#f-state", "failed")
    v.page.wait_for_selector(row, state="detached")
    v.page.select_option("#f-state", "succeeded")
    v.page.wait_for_selector(row)
    v.shot("jobs")
    v.page.click(f"{row} a")
    v.page.wait_for_selector("#job-state [data-state='succeeded']")
    v.page.wait_for_selector("text=Seconds and bytes per party")
    v.page.wait_for_selector("td:has-text('bureau')")  # bureau's own figures, asked of its node
    flow = v.page.text_content(".flow")
    assert "_echo" in flow and "100.0 %" in flow and " s" in flow and "B sent" in flow
    assert "job.succeeded" in v.page.text_content("#content")
    # this node's bytes to and from each peer, from the worker's report
    v.page.wait_for_selector("#peer-traffic td:has-text('bureau')")
    assert "_echo" in v.page.text_content("#peer-traffic")
    v.shot("job")
    # keyboard: the first Tab reaches the skip link
    v.page.keyboard.press("Tab")
    assert v.page.evaluate("document.activeElement.textContent") == "Skip to content"
    v.goto("/ui/login")
    v.page.wait_for_selector("#token:focus")
    v.shot("login")


def test_an_approver_approves_a_held_job_and_it_starts(viewer: Any, fed: Fed) -> None:
    job_id = fed.submit("bureau", ECHO)  # bank's policy approves nothing: it waits there
    fed.wait("bank", job_id, {"proposed"})
    v = viewer("bank", "approver")
    v.goto("/ui/approvals")
    card = f"section.card[data-job='{job_id}']"
    v.page.wait_for_selector(card)
    text = v.page.text_content(card)
    assert "bank_data" in text and "bureau_data" in text and "x0, x1" in text  # own columns
    assert "known only to bureau" in text and "_echo" in text
    assert "the policy has no approve rules" in text
    v.shot("approvals")
    v.page.click(f"{card} button:has-text('Approve')")
    now = f"{card} .job-now"
    v.page.wait_for_selector(f"{now} [data-state='running'], {now} [data-state='succeeded']")
    v.page.wait_for_selector(f"{now} [data-state='succeeded']", timeout=60_000)
    assert fed.wait("bureau", job_id, FINAL_OK) == "succeeded"
    # bureau's page names the rule that approved bank's jobs there
    w = viewer("bureau", "approver")
    w.goto("/ui/approvals")
    w.page.wait_for_selector("text=rule 1")


def test_a_failed_job_shows_its_error_in_plain_words(
    viewer: Any, fed: Fed, jobs: dict[str, str]
) -> None:
    job_id = jobs["fail"]
    assert fed.wait("bank", job_id, {"failed", "succeeded"}) == "failed"
    v = viewer("bank", "operator")
    v.goto(f"/ui/jobs/{job_id}")
    box = v.page.wait_for_selector("#failure")
    text = box.text_content()
    assert "Step 2 of 2 (_fail) failed." in text, text
    assert "bureau" in text and "boom: the test step failed on purpose" in text, text
    v.shot("job-failed")


def test_an_auditor_sees_the_audit_page_but_no_data(
    viewer: Any, fed: Fed, jobs: dict[str, str]
) -> None:
    job_id = jobs["model"]
    fed.wait("bank", job_id, FINAL_OK, 90)
    v = viewer("bank", "auditor")
    assert v.page.url.endswith("/ui/audit")
    ok = v.page.wait_for_selector("#verify [data-verified]")
    n = int(ok.get_attribute("data-verified"))
    assert n > 0 and f"Verified up to entry {n}" in ok.text_content()
    v.page.wait_for_selector(f"td:has-text('{job_id}')")
    v.shot("audit")
    for path in (
        "/v1/datasets",
        f"/v1/jobs/{job_id}/outputs",
        f"/v1/jobs/{job_id}/model",
        f"/v1/jobs/{job_id}/report",
        f"/v1/jobs/{job_id}/log",
    ):
        assert v.fetch_status(path) == 403, path
    assert v.fetch_status(f"/v1/jobs/{job_id}") == 200
    v.goto(f"/ui/jobs/{job_id}/model")
    v.page.wait_for_selector("[data-status='403']")


def test_model_report_datasets_and_peers(viewer: Any, fed: Fed, jobs: dict[str, str]) -> None:
    job_id = jobs["model"]
    assert fed.wait("bank", job_id, {"succeeded", "failed"}, 90) == "succeeded"
    v = viewer("bank", "operator")
    v.goto(f"/ui/jobs/{job_id}/model")
    roc = v.page.wait_for_selector("#chart-roc svg")
    for chart in ("ks", "lift", "gain", "importance"):
        v.page.wait_for_selector(f"#chart-{chart} svg")
    assert v.page.text_content("tr[data-set='test']").count("rows") == 1
    box = roc.bounding_box()
    v.page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    tip = v.page.wait_for_selector("#chart-roc .tip:not([hidden])")
    assert "FPR" in tip.text_content() and "TPR" in tip.text_content()
    v.shot("model")
    v.page.mouse.move(0, 0)
    v.page.focus("#chart-lift svg")  # the charts answer the arrow keys too
    v.page.keyboard.press("ArrowRight")
    lift = v.page.wait_for_selector("#chart-lift .tip:not([hidden])").text_content()
    assert lift.startswith("1: lift ") and " rows" in lift, lift
    w = viewer("bureau", "operator")  # the partner sees only its own part
    w.goto(f"/ui/jobs/{job_id}/model")
    w.page.wait_for_selector("text=does not hold the label")
    assert w.page.query_selector("#chart-roc") is None
    v.goto("/ui/datasets")
    v.page.wait_for_selector("[data-dataset='bank_data']")
    assert "60 rows" in v.page.text_content("[data-dataset='bank_data']")
    v.shot("datasets")
    v.goto("/ui/peers")
    v.page.wait_for_selector("tr[data-peer='bureau'] [data-state='alive']")
    assert " ms" in v.page.text_content("tr[data-peer='bureau']")
    cert = v.page.wait_for_selector("tr[data-peer='bureau'] [data-cert]")
    assert cert.get_attribute("data-cert") == "ok" and "days left" in cert.text_content()
    v.shot("peers")
    # a certificate that expires within 30 days is flagged (the API's answer, 10 days moved)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=10, hours=1)
    peers = fed.call("bank", "operator", "GET", "/peers")
    peers[0]["cert_expires"] = soon.isoformat()
    v.page.route("**/v1/peers", lambda route: route.fulfill(json=peers))
    v.page.reload()
    cert = v.page.wait_for_selector("tr[data-peer='bureau'] [data-cert='warn']")
    assert cert.text_content() == "10 days left — renew now"
