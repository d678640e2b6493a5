"""gpt-oss (``GptOssForCausalLM``) as llama.cpp's converter writes it: GGUF architecture ``gpt-oss``.

Mirrors ``conversion/gpt_oss.py`` GptOssModel and ``src/models/openai-moe.cpp`` (llama.cpp's name for
the architecture): every block is a mixture of experts with biases on the experts and the router,
its attention has biases and one learned sink logit per head, and every other block attends through
a sliding window (llama.cpp's fixed pattern 2, :data:`app.core.model.info.SWA_PATTERNS`, which is
the config's ``layer_types``). The official checkpoints store the experts in MXFP4 and the converter
copies them as they are (``repack_mxfp4``): ggml type MXFP4 whatever the --outtype, file type
MOSTLY_MXFP4_MOE. A BF16 re-upload (no ``quantization_config``) gets experts in the --outtype.
"""

from __future__ import annotations

from typing import Any

from app.core.model.hf_family import Config, Dims, Family
from app.core.model.hf_tensors import ATTENTION, EMBEDDINGS, LAYER, spec

# transformers src/transformers/models/gpt_oss/configuration_gpt_oss.py (GptOssConfig defaults).
GPT_OSS_DEFAULTS: dict[str, Any] = {
    "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880, "head_dim": 64, "num_attention_heads": 64,
    "num_key_value_heads": 8, "sliding_window": 128, "tie_word_embeddings": False, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "num_local_experts": 128, "num_experts_per_tok": 4, "attention_bias": True,
    "rope_theta": 150000.0,
}  # fmt: skip
# llama.h LLAMA_FTYPE_MOSTLY_MXFP4_MOE: what conversion/base.py writes for an mxfp4 checkpoint
# converted to F32, F16 or BF16 (ModelBase.prepare_metadata); a Q8_0 outtype keeps Q8_0.
MOSTLY_MXFP4_MOE = 38
_FLOAT_OUTTYPES = ("F32", "F16", "BF16")
_EXPERTS = ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight")

_BLOCK = (
    *ATTENTION[:4],  # attn_norm, attn_q, attn_k, attn_v
    spec("blk.{bid}.attn_q.bias", LAYER + "self_attn.q_proj.bias", "q"),
    spec("blk.{bid}.attn_k.bias", LAYER + "self_attn.k_proj.bias", "k"),
    spec("blk.{bid}.attn_v.bias", LAYER + "self_attn.v_proj.bias", "v"),
    spec("blk.{bid}.attn_output.weight", LAYER + "self_attn.o_proj.weight", "q", "embd"),
    spec("blk.{bid}.attn_output.bias", LAYER + "self_attn.o_proj.bias", "embd"),
    # One sink logit per head; the converter appends ".weight" (GptOssModel.filter_tensors).
    spec("blk.{bid}.attn_sinks.weight", LAYER + "self_attn.sinks", "n_head"),
    spec("blk.{bid}.post_attention_norm.weight", LAYER + "post_attention_layernorm.weight", "embd"),
    spec("blk.{bid}.ffn_gate_inp.weight", LAYER + "mlp.router.weight", "embd", "expert"),
    spec("blk.{bid}.ffn_gate_inp.bias", LAYER + "mlp.router.bias", "expert"),
    # The checkpoint fuses gate and up, interleaved row by row; the converter splits them.
    spec("blk.{bid}.ffn_gate_exps.weight", LAYER + "mlp.experts.gate_up_proj_blocks", "embd", "ff_exp", "expert"),
    spec("blk.{bid}.ffn_up_exps.weight", None, "embd", "ff_exp", "expert"),
    spec("blk.{bid}.ffn_down_exps.weight", LAYER + "mlp.experts.down_proj_blocks", "ff_exp", "embd", "expert"),
    spec("blk.{bid}.ffn_gate_exps.bias", LAYER + "mlp.experts.gate_up_proj_bias", "ff_exp", "expert"),
    spec("blk.{bid}.ffn_up_exps.bias", None, "ff_exp", "expert"),
    spec("blk.{bid}.ffn_down_exps.bias", LAYER + "mlp.experts.down_proj_bias", "embd", "expert"),
)  # fmt: skip


def is_mxfp4(cfg: Config) -> bool:
    """The checkpoint keeps its experts in MXFP4 (``quantization_config.quant_method``)."""
    quant = cfg.get("quantization_config")
    return isinstance(quant, dict) and quant.get("quant_method") == "mxfp4"


def _tensor_type(cfg: Config, name: str) -> str | None:
    return "MXFP4" if is_mxfp4(cfg) and name.endswith(_EXPERTS) else None


def _file_type(cfg: Config, dtype: str) -> int | None:
    return MOSTLY_MXFP4_MOE if is_mxfp4(cfg) and dtype in _FLOAT_OUTTYPES else None


def _metadata(cfg: Config, arch: str, dims: Dims) -> dict[str, Any]:
    # GptOssModel.set_gguf_parameters: the window, and the expert width (intermediate_size).
    return {
        f"{arch}.attention.sliding_window": int(cfg.get("sliding_window") or 0),
        f"{arch}.expert_feed_forward_length": dims["ff_exp"],
    }


GPT_OSS = Family(
    model_types={"gpt_oss": "gpt-oss"},
    defaults={"gpt_oss": GPT_OSS_DEFAULTS},
    tensors={"gpt-oss": (EMBEDDINGS[:3], _BLOCK)},  # token_embd, output_norm, output (untied)
    metadata=_metadata,
    tensor_type=_tensor_type,
    file_type=_file_type,
)
