"""ModelInfo's attention layers: what each layer caches per token (llama_hparams::n_embd_k_gqa(il) and
n_embd_v_gqa(il)) when layers differ — sliding-window heads of their own width (Gemma 4), layers that
reuse another layer's cache (Gemma 4's KV sharing), latent attention without a V cache (MLA)."""

from __future__ import annotations

from typing import Any

from app.core.model.hf_arch import header_from_hf_config
from app.core.model.info import ModelInfo, model_info_from_header
from tests.core.model.tiny_families import GEMMA4_E2B, GEMMA4_MOE, GLM4_MOE, GLM4_MOE_LITE, GPT_OSS


def from_config(config: dict[str, Any]) -> ModelInfo:
    return model_info_from_header(header_from_hf_config(config), source="test", source_kind="hf_dir")


def test_gemma4_sliding_layers_cache_narrower_heads_and_shared_layers_none() -> None:
    m = from_config(GEMMA4_E2B)
    assert m.swa_layers == (True,) * 4 + (False,) + (True,) * 4 + (False,)
    assert m.sliding_window == 512
    assert (m.head_dim_k, m.head_dim_k_swa) == (32, 16)
    assert m.kv_widths(0) == (16, 16) and m.kv_widths(4) == (32, 32)
    # n_layer_kv_from_start = 10 - 5: the last five layers read layers 3 and 4's cache
    assert m.n_head_kv == (1,) * 5 + (0,) * 5
    assert [m.kv_widths(il) for il in range(5, 10)] == [(0, 0)] * 5


def test_gemma4_full_layers_have_their_own_kv_head_count() -> None:
    m = from_config(GEMMA4_MOE)
    assert m.n_head_kv == (2, 2, 2, 2, 2, 1)
    assert m.kv_widths(0) == (32, 32)  # 2 heads of 16
    assert m.kv_widths(5) == (32, 32)  # 1 head of 32; V is allocated although V = K (only MLA drops it)
    assert m.is_moe and m.n_expert_used == 2


def test_latent_attention_caches_k_only() -> None:
    m = from_config(GLM4_MOE_LITE)
    assert m.architecture == "deepseek2"
    assert m.n_layer == 4 and m.n_layer_mtp == 1  # the draft head gets no cache in the main context
    assert (m.head_dim_k, m.head_dim_v) == (40, 0)  # kv_lora_rank + rope, and no V
    assert [m.kv_widths(il) for il in range(4)] == [(40, 0)] * 3 + [(0, 0)]


def test_glm4_moe_draft_head_has_no_cache() -> None:
    m = from_config(GLM4_MOE)
    assert m.n_layer == 4 and m.n_layer_mtp == 1 and m.n_head_kv == (2, 2, 2, 0)
    assert m.head_dim_k_swa is None and m.head_dim_v_swa is None


def test_gpt_oss_slides_on_every_other_layer_from_the_first() -> None:
    m = from_config(GPT_OSS)
    assert m.swa_layers == (True, False, True, False) and m.sliding_window == 128
    assert m.file_type == "MXFP4_MOE"
    assert m.kv_widths(0) == m.kv_widths(1) == (32, 32)
