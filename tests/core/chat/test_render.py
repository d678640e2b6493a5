"""Rendering in the sandbox: hostile templates refused, the fallback used, HF's helpers and whitespace rules."""

from __future__ import annotations

import pytest

from app.core.chat.render import render, render_with_fallback
from app.core.errors import TailorError, TemplateError
from tests.core.chat.samples import CONVERSATION, EXPECTED, file_template


@pytest.mark.parametrize(
    "malicious",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__ }}",
        "{{ messages.append({'role': 'user'}) }}",
        "{% include '/etc/passwd' %}",
    ],
)
def test_sandbox_blocks_malicious_template(malicious: str) -> None:
    template = file_template(malicious)
    with pytest.raises(TemplateError) as info:
        render(template, CONVERSATION)
    assert isinstance(info.value, TailorError)
    assert str(info.value).startswith("The chat template from the model file could not format")
    assert info.value.hint == "TailorLM can use its built-in Gemma template instead."

    prompt, used = render_with_fallback(template, CONVERSATION, bos_token="<s>")
    assert prompt == EXPECTED["Gemma"]
    assert used.name == "Gemma"
    assert used.describe().startswith("The file's chat template failed (")
    assert used.describe().endswith("); using the Gemma template (by architecture gemma3).")


def test_raise_exception_becomes_template_error() -> None:
    template = file_template(
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    )
    with pytest.raises(TemplateError, match="System role not supported") as info:
        render(template, CONVERSATION)
    assert info.value.cause == "the template refused the conversation: System role not supported"
    assert render(template, CONVERSATION[1:]) == ""


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError, match="syntax error on line 2"):
        render(file_template("ok\n{% for %}"), CONVERSATION)


def test_hf_helpers() -> None:
    template = file_template(
        "{{ messages | tojson }}|{{ strftime_now('%Y') | length }}|"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}|"
        "{% generation %}{{ messages[-1].content }}{% endgeneration %}|{{ tools is none }}"
    )
    assert render(template, [{"role": "user", "content": "<é>"}]) == (
        '[{"role": "user", "content": "<é>"}]|4|user|<é>|True'
    )


def test_trim_blocks_like_hugging_face() -> None:
    # HF renders with trim_blocks and lstrip_blocks: block tags leave no newlines or indentation.
    template = file_template(
        "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}"
    )
    assert render(template, CONVERSATION) == "[Hi]\n[Bye]\n"
