"""The model process: ``python -m app.engine.worker``. Reads protocol lines on stdin, writes them
on a private copy of stdout, and runs llama.cpp. If it crashes or is killed, only it dies."""

from __future__ import annotations

import os
import queue
import sys
import threading
from typing import BinaryIO

from app.engine import protocol as P


class Worker:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.out_lock = threading.Lock()
        self.inbox: queue.Queue[P.Message | None] = queue.Queue()
        self.active_request: int | None = None
        self.session = None  # created on first load: importing llama_cpp costs ~0.2 s

    def send(self, msg: P.Message) -> None:
        with self.out_lock:
            self.out.write(P.encode(msg))
            self.out.flush()

    def read_stdin(self) -> None:
        """Reader thread: a Cancel acts at once (the generation loop polls the flag); the rest queue."""
        for line in sys.stdin.buffer:
            if not line.strip():
                continue
            try:
                msg = P.decode(line)
            except (ValueError, TypeError) as exc:
                self.send(P.Failed(stage="protocol", message=f"bad message: {exc}"))
                continue
            if isinstance(msg, P.Cancel):
                if self.session is not None and msg.request_id in (self.active_request, -1):
                    self.session.cancel.set()
                continue
            self.inbox.put(msg)
        self.inbox.put(None)  # parent went away

    def run(self) -> int:
        threading.Thread(target=self.read_stdin, daemon=True, name="stdin").start()
        while True:
            msg = self.inbox.get()
            if msg is None or isinstance(msg, P.Shutdown):
                return 0
            try:
                self.handle(msg)
            except Exception as exc:  # report, keep serving: the parent decides what to do
                rid = getattr(msg, "request_id", None)
                self.send(
                    P.Failed(stage=msg.kind, message=f"{exc.__class__.__name__}: {exc}", request_id=rid)
                )

    def handle(self, msg: P.Message) -> None:
        from app.engine.llama_session import GenStats, LlamaSession, LoadFailed, rss_bytes

        if isinstance(msg, P.Load):
            if self.session is None:
                self.session = LlamaSession()
            self.session.cancel.clear()
            last = [0.0]

            def progress(f: float) -> None:
                if f - last[0] >= 0.05 or f >= 1.0:
                    last[0] = f
                    self.send(P.LoadProgress(fraction=round(f, 3)))

            try:
                info = self.session.load(msg, progress)
            except LoadFailed as exc:
                self.send(P.Failed(stage="load", message=str(exc), hint=exc.hint))
                return
            self.send(P.Loaded(n_gpu_layers=msg.n_gpu_layers, rss_bytes=rss_bytes()[0], **info))
        elif isinstance(msg, P.Generate):
            if self.session is None or self.session.ctx is None:
                self.send(P.Failed(stage="generate", message="no model is loaded", request_id=msg.request_id))
                return
            self.session.cancel.clear()
            self.active_request = msg.request_id
            stats = GenStats()
            try:
                for piece in self.session.generate(
                    msg.prompt, msg.sampling, stats, flush_s=msg.flush_ms / 1000
                ):
                    self.send(
                        P.TokenChunk(request_id=msg.request_id, text=piece.text, n_tokens=piece.n_tokens)
                    )
            finally:
                self.active_request = None
            cur, peak = rss_bytes()
            self.send(P.Done(
                request_id=msg.request_id,
                stop_reason=stats.stop_reason,
                n_prompt_tokens=stats.n_prompt_tokens,
                n_prompt_evaluated=stats.n_prompt_evaluated,
                n_gen_tokens=stats.n_gen_tokens,
                ttft_ms=stats.ttft_s * 1000,
                prompt_tok_s=stats.n_prompt_evaluated / stats.prompt_s if stats.prompt_s > 0 else 0.0,
                gen_tok_s=stats.n_gen_tokens / stats.gen_s if stats.gen_s > 0 else 0.0,
                rss_bytes=cur,
                peak_rss_bytes=peak,
            ))  # fmt: skip
        elif isinstance(msg, P.Tokenize):
            if self.session is None or self.session.ctx is None:
                self.send(P.Failed(stage="tokenize", message="no model is loaded", request_id=msg.request_id))
                return
            n = len(self.session.tokenize(msg.text))
            self.send(P.TokenCount(request_id=msg.request_id, n_tokens=n))
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


def main() -> int:
    # The protocol owns a private copy of stdout; fd 1 then points at stderr so that anything
    # llama.cpp or a library prints cannot corrupt the message stream.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(proto_fd, "wb", buffering=0)
    sys.stdout = sys.stderr
    code = Worker(out).run()  # type: ignore[arg-type]
    out.flush()
    # Exit without interpreter teardown: the stdin reader thread may be blocked in a read, and
    # llama.cpp's buffers go with the process anyway.
    os._exit(code)


if __name__ == "__main__":
    main()
