"""The built-in chat templates: the Jinja source and the turn-end stop strings of each family.

Used when a GGUF carries no template of its own, or its template fails; which family a model gets
is decided in :func:`app.core.chat.template.builtin_for`.
"""

from __future__ import annotations

# The built-in templates follow each family's published Hugging Face template (and agree with
# llama.cpp's llm_chat_apply_template), simplified to text-only content.
_CHATML = r"""
{%- for message in messages %}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
"""

# google/gemma-3-*-it: no system role; the system prompt opens the first user turn.
_GEMMA = r"""
{{- bos_token }}
{%- if messages and messages[0]['role'] == 'system' %}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}
{%- else %}
{%- set first_user_prefix = '' %}{% set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}
{{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}
{{- message['content'] | trim + '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}
"""

# meta-llama/Meta-Llama-3-8B-Instruct
_LLAMA_3 = r"""
{{- bos_token }}
{%- for message in messages %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
"""

# meta-llama/Llama-2-7b-chat-hf (Meta's llama/generation.py): <<SYS>> inside the first [INST].
_LLAMA_2 = r"""
{%- if messages and messages[0]['role'] == 'system' %}
{%- set system_prefix = '<<SYS>>\n' + messages[0]['content'] | trim + '\n<</SYS>>\n\n' %}{% set loop_messages = messages[1:] %}
{%- else %}
{%- set system_prefix = '' %}{% set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
{%- if message['role'] == 'user' %}
{{- bos_token + '[INST] ' + (system_prefix if loop.first else '') + message['content'] | trim + ' [/INST]' }}
{%- else %}
{{- ' ' + message['content'] | trim + ' ' + eos_token }}
{%- endif %}
{%- endfor %}
"""

# Mistral's v3 format (llama.cpp "mistral-v3"), the system prompt folded into the first [INST].
_MISTRAL = r"""
{{- bos_token }}
{%- if messages and messages[0]['role'] == 'system' %}
{%- set system_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}
{%- else %}
{%- set system_prefix = '' %}{% set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
{%- if message['role'] == 'user' %}
{{- '[INST] ' + (system_prefix if loop.first else '') + message['content'] + '[/INST]' }}
{%- else %}
{{- ' ' + message['content'] | trim + eos_token }}
{%- endif %}
{%- endfor %}
"""

# microsoft/Phi-3-mini-4k-instruct
_PHI_3 = r"""
{%- for message in messages %}
{{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}
"""

# HuggingFaceH4/zephyr-7b-beta (also TinyLlama-Chat)
_ZEPHYR = r"""
{%- for message in messages %}
{{- '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}
"""

# family name → (Jinja source, the strings that end a model turn)
BUILTIN_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ChatML": (_CHATML, ("<|im_end|>",)),
    "Gemma": (_GEMMA, ("<end_of_turn>",)),
    "Llama 3": (_LLAMA_3, ("<|eot_id|>",)),
    # [INST] too: a model that starts writing the user's next turn has finished its own.
    "Llama 2": (_LLAMA_2, ("</s>", "[INST]")),
    "Mistral": (_MISTRAL, ("</s>", "[INST]")),
    "Phi-3": (_PHI_3, ("<|end|>",)),
    "Zephyr": (_ZEPHYR, ("</s>", "<|user|>")),
}
