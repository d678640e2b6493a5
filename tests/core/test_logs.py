"""Logs rotate in the log folder, crashes leave a report, and tokens never reach either."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from app.core import paths
from app.core.logs import setup_logging, write_crash_report


def test_log_file_redacts_tokens() -> None:
    path = setup_logging()
    logging.getLogger("tailorlm.test").warning("using token hf_abcdefSECRET1234 and Bearer xyz")
    for h in logging.getLogger().handlers:
        h.flush()
    text = path.read_text()
    assert "hf_abcdefSECRET1234" not in text and "Bearer xyz" not in text and "[redacted]" in text


def test_crash_report_names_the_error_and_the_versions() -> None:
    try:
        raise RuntimeError("boom in a slot")
    except RuntimeError as exc:
        report = write_crash_report(exc)
    text = report.read_text()
    assert (
        report.parent == paths.log_dir()
        and "boom in a slot" in text
        and "TailorLM" in text
        and "Python" in text
    )


def test_an_uncaught_error_in_a_process_writes_a_report_and_says_where() -> None:
    code = "from app.core.logs import setup_logging; setup_logging(); raise ValueError('kaput')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "a report was written to" in out.stderr
    report = out.stderr.rsplit("written to ", 1)[1].strip()
    assert "kaput" in Path(report).read_text()


def test_crash_reports_in_the_same_second_do_not_overwrite_each_other() -> None:
    reports = []
    for word in ("alpha", "bravo", "charlie"):
        try:
            raise RuntimeError(f"{word} crash")
        except RuntimeError as exc:
            reports.append(write_crash_report(exc))
    assert len(set(reports)) == 3
    assert [("alpha crash" in r.read_text(), "bravo crash" in r.read_text()) for r in reports[:2]] == [
        (True, False),
        (False, True),
    ]
