"""The model process: ``python -m app.engine.worker``. Reads protocol lines on stdin, writes them
on a private copy of stdout, and runs llama.cpp. If it crashes or is killed, only it dies.

Requests run one at a time on the main thread; a reader thread takes each line as it comes, so a
``Cancel`` acts while a request runs, and so does ``Shutdown`` (or the end of input): the running
request ends as cancelled and queued ones do not start. Cancels name their request: the id joins a bounded set of
cancelled ids, and sets the abort flag if that request is the one running. A request starts only
after checking the set, under the same lock — so a cancel that arrives before its request (or
while it waits in the queue) still wins, and a cancel for one request never stops another.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from typing import TYPE_CHECKING, BinaryIO

from app.core.errors import TailorError
from app.core.runtime import private_stdout
from app.engine import protocol as P
from app.engine.errors import LoadFailed
from app.engine.host import rss_bytes
from app.engine.native import AbortFlag

if TYPE_CHECKING:
    from app.engine.llama_session import LlamaSession
    from app.engine.token_stream import GenStats


class Worker:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.out_lock = threading.Lock()
        self.inbox: queue.Queue[P.Message | None] = queue.Queue()
        self.cancelled = P.RecentIds()
        self.active_lock = threading.Lock()  # the running request's id, the cancelled set, the abort flag
        self.active_request: int | None = None
        self.abort = AbortFlag()  # set: the running request is cancelled (llama.cpp polls it)
        self.closing = False  # Shutdown or end of input seen: no request starts any more
        self.session: LlamaSession | None = None  # created on first load: importing llama_cpp costs ~0.2 s

    def send(self, msg: P.Message) -> None:
        with self.out_lock:
            self.out.write(P.encode(msg))
            self.out.flush()

    def read_stdin(self) -> None:
        """Reader thread: a Cancel acts at once; the rest queue for the main thread."""
        for line in sys.stdin.buffer:
            if not line.strip():
                continue
            try:
                msg = P.decode(line)
            except (ValueError, TypeError) as exc:
                self.send(P.Failed(stage="protocol", message=f"bad message: {exc}"))
                continue
            if isinstance(msg, P.Cancel):
                self.cancel(msg.request_id)
                continue
            if isinstance(msg, P.Shutdown):
                self.stop_all()
            self.inbox.put(msg)
        self.stop_all()
        self.inbox.put(None)  # parent went away

    # --- request ids ------------------------------------------------------------------------

    def cancel(self, request_id: int) -> None:
        with self.active_lock:
            self.cancelled.add(request_id)
            if request_id == self.active_request:
                self.abort.set()

    def stop_all(self) -> None:
        """The app is closing us: the running request ends now, and queued ones do not start."""
        with self.active_lock:
            self.closing = True
            self.abort.set()

    def begin(self, request_id: int) -> bool:
        """Make ``request_id`` the running request; False if it was cancelled already."""
        with self.active_lock:
            if request_id in self.cancelled or self.closing:
                return False
            self.active_request = request_id
            self.abort.clear()  # the flag now belongs to this request; the set said it is not cancelled
            return True

    def end(self) -> None:
        with self.active_lock:
            self.active_request = None

    # --- the main thread --------------------------------------------------------------------

    def run(self) -> int:
        threading.Thread(target=self.read_stdin, daemon=True, name="stdin").start()
        while True:
            msg = self.inbox.get()
            if msg is None or isinstance(msg, P.Shutdown):
                return 0
            try:
                self.handle(msg)
            except TailorError as exc:  # meant for the user: by class, so the app raises the same one
                rid = getattr(msg, "request_id", None)
                self.send(P.Failed(stage=msg.kind, message=str(exc), hint=exc.hint, request_id=rid,
                                   error=exc.__class__.__name__))  # fmt: skip
            except Exception as exc:  # report, keep serving: the parent decides what to do
                rid = getattr(msg, "request_id", None)
                self.send(
                    P.Failed(stage=msg.kind, message=f"{exc.__class__.__name__}: {exc}", request_id=rid)
                )
            finally:
                self.end()

    def handle(self, msg: P.Message) -> None:
        if isinstance(msg, P.Load):
            self.load(msg)
        elif isinstance(msg, P.Generate | P.Tokenize | P.Bench):
            session = self.session
            if session is None or session.ctx is None:
                self.send(P.Failed(stage=msg.kind, message="no model is loaded", request_id=msg.request_id))
            elif not self.begin(msg.request_id):
                cur, peak = rss_bytes()
                if isinstance(msg, P.Bench):
                    self.send(P.BenchDone(request_id=msg.request_id, n_prompt=0, n_gen=0, prompt_tok_s=[],
                                          gen_tok_s=[], stop_reason="cancelled", rss_bytes=cur, peak_rss_bytes=peak))  # fmt: skip
                else:
                    self.send(
                        P.Done.cancelled_before_start(msg.request_id, rss_bytes=cur, peak_rss_bytes=peak)
                    )
            elif isinstance(msg, P.Generate):
                self.generate(session, msg)
            elif isinstance(msg, P.Bench):
                self.bench(session, msg)
            else:
                self.send(P.TokenCount(request_id=msg.request_id, n_tokens=len(session.tokenize(msg.text))))
        elif isinstance(msg, P.Stats):
            cur, peak = rss_bytes()
            s = self.session
            loaded = s is not None and s.ctx is not None
            n_ctx = int(s.L.llama_n_ctx(s.ctx)) if loaded and s is not None else 0
            used = len(s.kv_tokens) if s is not None else 0
            self.send(P.StatsReport(request_id=msg.request_id, rss_bytes=cur, peak_rss_bytes=peak, loaded=loaded,
                                    n_ctx=n_ctx, n_ctx_used=used))  # fmt: skip
        elif isinstance(msg, P.Unload) and self.session is not None:
            self.session.unload()

    def load(self, msg: P.Load) -> None:
        from app.engine.llama_session import LlamaSession

        if self.session is None:
            self.session = LlamaSession(self.abort)
        last = [0.0]

        def progress(f: float) -> None:
            if f - last[0] >= 0.05 or f >= 1.0:
                last[0] = f
                self.send(P.LoadProgress(fraction=round(f, 3)))

        try:
            info = self.session.load(msg, progress)
        except LoadFailed as exc:
            self.send(P.Failed(stage="load", message=str(exc), hint=exc.hint, error="LoadFailed"))
            return
        self.send(P.Loaded(n_gpu_layers=msg.n_gpu_layers, rss_bytes=rss_bytes()[0], **info))

    def generate(self, session: LlamaSession, msg: P.Generate) -> None:
        from app.engine.token_stream import GenStats

        stats = GenStats()
        for piece in session.generate(msg.prompt, msg.sampling, stats, flush_s=msg.flush_ms / 1000):
            self.send(P.TokenChunk(request_id=msg.request_id, text=piece.text, n_tokens=piece.n_tokens))
        self.send(_done(msg.request_id, stats))

    def bench(self, session: LlamaSession, msg: P.Bench) -> None:
        from app.engine.bench_loop import run_bench

        def progress(fraction: float) -> None:
            self.send(P.BenchProgress(request_id=msg.request_id, fraction=round(fraction, 3)))

        runs = run_bench(session, n_prompt=msg.n_prompt, n_gen=msg.n_gen, reps=msg.reps, budget_s=msg.budget_s,
                         on_progress=progress)  # fmt: skip
        cur, peak = rss_bytes()
        self.send(P.BenchDone(request_id=msg.request_id, n_prompt=runs.n_prompt, n_gen=runs.n_gen,
                              prompt_tok_s=runs.prompt_tok_s, gen_tok_s=runs.gen_tok_s, stop_reason=runs.stop_reason,
                              rss_bytes=cur, peak_rss_bytes=peak))  # fmt: skip


def _done(request_id: int, stats: GenStats) -> P.Done:
    cur, peak = rss_bytes()
    return P.Done(
        request_id=request_id,
        stop_reason=stats.stop_reason,
        n_prompt_tokens=stats.n_prompt_tokens,
        n_prompt_evaluated=stats.n_prompt_evaluated,
        n_gen_tokens=stats.n_gen_tokens,
        ttft_ms=stats.ttft_s * 1000 if stats.ttft_s is not None else None,
        prompt_tok_s=stats.n_prompt_evaluated / stats.prompt_s if stats.prompt_s else None,
        gen_tok_s=stats.n_gen_tokens / stats.gen_s if stats.gen_s else None,
        rss_bytes=cur,
        peak_rss_bytes=peak,
    )


def main() -> int:
    out = private_stdout()
    code = Worker(out).run()
    out.flush()
    # Exit without interpreter teardown: the stdin reader thread may be blocked in a read, and
    # llama.cpp's buffers go with the process anyway.
    os._exit(code)


if __name__ == "__main__":
    main()
