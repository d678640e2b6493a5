"""Download throughput: TailorLM's pull (resumable, SHA-256 verified, into the HF cache) against a
plain HTTP copy of the same file from the same server, side by side, interleaved.

The fake Hub runs in its own process (as a real server would) and answers like the Hub: a 302 to
a CDN URL, then the bytes. "plain" is the least a downloader can do: follow the redirect, read,
write — no hashing, no resume bookkeeping. ``curl`` is measured too when it is installed.

    python tests/bench/download_speed.py [--rounds 3] [--size-mib 1024]

Prints JSON; the README quotes the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.hub.repo import list_gguf_files  # noqa: E402
from app.core.library.pull import pull_model  # noqa: E402
from app.core.library.registry import Library  # noqa: E402
from tests.models import gemma3_path, smollm2_path  # noqa: E402

REPO = "bench/files-GGUF"
# The server's pace: loopback as fast as it goes (then SHA-256 on one core is the limit), and a
# 1 Gbit/s link, faster than most users' connection to the Hub.
LINKS = {"loopback_unlimited": 0.0, "link_1_gbit_s": 1000 / 8 * 1e6 / 2**20}


def _sha256_speed() -> float:
    """Bytes/s this machine's hashlib SHA-256 manages on one core: the ceiling of a verified copy."""
    import hashlib

    data = os.urandom(1 << 26)
    t0 = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return len(data) / (time.perf_counter() - t0)


def _plain_copy(url: str, out: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as resp, out.open("wb") as f:
        while chunk := resp.read(1 << 20):
            f.write(chunk)


def _timed(fn: object, *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - t0


def _round(url: str, do_pull: partial[object], work: Path, curl: str | None, ours_first: bool,
           r: dict[str, list[float]]) -> None:  # fmt: skip
    def plain() -> None:
        r.setdefault("plain_s", []).append(_timed(_plain_copy, url, work / "plain.bin"))
        (work / "plain.bin").unlink()

    def ours() -> None:
        r.setdefault("tailorlm_s", []).append(_timed(do_pull))
        shutil.rmtree(work / "hub")

    for step in (ours, plain) if ours_first else (plain, ours):
        step()
    if curl:
        r.setdefault("curl_s", []).append(
            _timed(subprocess.run, [curl, "-sSL", "-o", str(work / "c.bin"), url])
        )
        (work / "c.bin").unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024, help="size of the large GGUF")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tailorlm-dl-bench-"))
    try:
        # A large GGUF: SmolLM2's header and weights, then random padding (llama.cpp ignores bytes
        # past the last tensor; the header parser checks only that the tensors fit).
        smol = smollm2_path()
        big = work / "big-Q4_1.gguf"
        shutil.copyfile(smol, big)
        with big.open("ab") as f:
            for _ in range(max(0, args.size_mib - smol.stat().st_size // 2**20)):
                f.write(os.urandom(1 << 20))
        gemma = gemma3_path()
        os.environ["HF_HUB_CACHE"] = str(work / "hub")
        os.environ["TAILORLM_HOME"] = str(work / "home")
        curl = shutil.which("curl")
        report: dict[str, object] = {"benchmark": "download_speed", "rounds": args.rounds,
                                     "what": "tailorlm pull (listing, commit, transfer, SHA-256, HF-cache link, "
                                             "library registration) vs a plain urllib copy and curl",
                                     "sha256_mib_s": round(_sha256_speed() / 2**20, 1)}  # fmt: skip
        for link, rate in LINKS.items():
            cmd = [
                sys.executable,
                "-m",
                "tests.fake_hub",
                "--rate-mib-s",
                str(rate),
                REPO,
                str(gemma),
                str(big),
            ]
            server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            assert server.stdout is not None
            endpoint = server.stdout.readline().strip()
            os.environ["HF_ENDPOINT"] = endpoint
            results: dict[str, dict[str, list[float]]] = {}
            try:
                files = {f.file.first: f for f in list_gguf_files(REPO)}
                for path in (gemma, big):  # warm the server's page cache: every contestant reads from memory
                    _plain_copy(f"{endpoint}/{REPO}/resolve/main/{path.name}", work / "warm.bin")
                (work / "warm.bin").unlink()
                for i in range(args.rounds):
                    for path in (gemma, big):
                        url = f"{endpoint}/{REPO}/resolve/main/{path.name}"
                        do_pull = partial(pull_model, REPO, files[path.name], library=Library())
                        _round(url, do_pull, work, curl, i % 2 == 1, results.setdefault(path.name, {}))
            finally:
                server.terminate()
            per_link: dict[str, object] = {}
            for name, r in results.items():
                size = (gemma if name == gemma.name else big).stat().st_size
                med = {k: statistics.median(v) for k, v in r.items()}
                per_link[name] = {
                    "bytes": size,
                    **{k.replace("_s", "_mib_s"): round(size / v / 2**20, 1) for k, v in med.items()},
                    "tailorlm_vs_plain": round(med["plain_s"] / med["tailorlm_s"], 3),
                    "per_round_ratio": [
                        round(p / t, 3) for p, t in zip(r["plain_s"], r["tailorlm_s"], strict=True)
                    ],
                }
            report[link] = per_link
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
