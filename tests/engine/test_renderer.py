"""Hostile chat templates render in a process of their own: bounded in time, memory and output,
never in the app's process, and the file's failure really hands the chat to the built-in template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from app.core.chat.render import render
from app.core.chat.template import ChatTemplate, builtin_for, select_template
from app.core.errors import TemplateError
from app.core.model.gguf_header import read_gguf_file
from app.engine.errors import RequestCancelled
from app.engine.renderer import TemplateRenderer
from tests.gguf_edit import with_string

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
DEADLINE_S = 2.0

# The examples and their cousins: (template, what stops it).
HOSTILE = {
    "nested range loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                           "ran for more than"),
    "lipsum": ("{{ lipsum(n=10**7) }}", "'lipsum' is undefined"),
    "percent width": ("{{ '%0999999999d' % 1 }}", "too big for a prompt"),
    "format filter width": ("{{ '%0999999999d' | format(1) }}", "memory allowed"),
    "str.format width": ("{{ '{:0999999999}'.format(1) }}", "memory allowed"),
    "center": ("{{ 'ab' | center(10**9) }}", "memory allowed"),
    "tojson indent": ("{{ messages | tojson(indent=10**8) }}", "too big for a prompt"),
    "string repeat": ("{{ 'x' * 10**10 }}", "too big for a prompt"),
    "list repeat": ("{{ ([1] * 10**9) | length }}", "too big for a prompt"),
    "huge power": ("{{ 7 ** (10 ** 7) }}", "too big for a prompt"),
    "string doubling": ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s | length }}", "memory allowed"),
    "output flood": ("{% for i in range(100000) %}{{ messages | tojson }}{% endfor %}", "too big for a prompt"),
    "recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nests too deeply"),
}  # fmt: skip


def _file_template(jinja: str) -> ChatTemplate:
    fallback = builtin_for({"general.architecture": "llama"})
    return ChatTemplate("from the model file", "gguf", jinja, (), fallback=fallback)


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    r = TemplateRenderer(deadline_s=DEADLINE_S)
    yield r
    r.close()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_template_is_bounded_and_costs_only_the_renderer(
    case: str, renderer: TemplateRenderer
) -> None:
    jinja, why = HOSTILE[case]
    me = psutil.Process()
    rss_before = me.memory_info().rss
    t0 = time.monotonic()
    with pytest.raises(TemplateError) as info:
        renderer(_file_template(jinja), MESSAGES)
    elapsed = time.monotonic() - t0
    assert why in str(info.value)
    assert str(info.value).startswith("The chat template from the model file could not format")
    assert info.value.hint == "TailorLM can use its built-in ChatML template instead."
    assert elapsed < DEADLINE_S + 2.0
    assert me.memory_info().rss - rss_before < 64 << 20  # nothing big was built in this process
    # and the renderer works again at once (a fresh process where the last one was killed)
    assert renderer(_file_template("{{ messages[-1].content }}!"), MESSAGES) == "Hi!"


def test_the_renderer_process_renders_like_the_sandbox(
    renderer: TemplateRenderer, smollm2_path: Path
) -> None:
    template = select_template(read_gguf_file(smollm2_path).metadata)
    assert template.source == "gguf"
    long = [*MESSAGES, *({"role": r, "content": f"turn {i} " * 50} for i, r in
                         zip(range(200), ["assistant", "user"] * 100, strict=True))]  # fmt: skip
    for messages in (MESSAGES, long):
        assert renderer(template, messages, bos_token="<s>") == render(template, messages, bos_token="<s>")


def test_built_in_templates_render_here_without_a_process() -> None:
    renderer = TemplateRenderer()
    gemma = builtin_for({"general.architecture": "gemma3"})
    assert renderer(gemma, MESSAGES) == render(gemma, MESSAGES)
    assert not renderer.running  # no process was started for our own template


def test_a_cancel_stops_a_slow_render_at_once(renderer: TemplateRenderer) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(RequestCancelled):
        renderer(
            _file_template(HOSTILE["nested range loops"][0]), MESSAGES, cancelled=stop.is_set, request_id=7
        )
    assert time.monotonic() - t0 < 1.0


def test_a_failing_file_template_hands_the_chat_to_the_built_in_one(
    tmp_path: Path, smollm2_path: Path
) -> None:
    """The CLI used to exit 2 here: the history trimming rendered with the file's template."""
    hostile = with_string(smollm2_path, tmp_path / "hostile.gguf", "tokenizer.chat_template",
                          HOSTILE["nested range loops"][0])  # fmt: skip
    env = dict(os.environ, TAILORLM_TEMPLATE_TIMEOUT_S="1")
    cmd = [sys.executable, "-m", "app.cli", "chat", str(hostile), "--ctx", "512", "--prompt", "Hi",
           "--max-tokens", "4", "--temperature", "0", "--json"]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["template"].startswith("The file's chat template failed (it ran for more than 1 s)")
    assert out["template"].endswith("using the ChatML template (the common default; nothing known for "
                                    "architecture llama).")  # fmt: skip
    assert out["metrics"]["n_gen_tokens"] > 0
    assert time.monotonic() - t0 < 60
