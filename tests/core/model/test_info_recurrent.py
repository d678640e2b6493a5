"""ModelInfo's recurrent layers: which layers llama.cpp gives a recurrent state instead of a KV cache,
and how big that state is (llama_hparams::n_embd_r / n_embd_s), per architecture."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.errors import CorruptModelError
from app.core.model.gguf_header import GGUFHeader, TensorInfo
from app.core.model.hf_arch import header_from_hf_config
from app.core.model.info import ModelInfo, model_info_from_header
from tests.hybrid_models import GRANITE_4_H_350M, LFM2_350M, QWEN35_08B


def info(header: GGUFHeader) -> ModelInfo:
    return model_info_from_header(header, source="test", source_kind="gguf")


def from_config(config: dict[str, Any]) -> ModelInfo:
    return info(header_from_hf_config(config))


def header(arch: str, n_layer: int, **keys: Any) -> GGUFHeader:
    """A minimal GGUF header: ``keys`` are ``{arch}.*`` keys with dots written as double underscores."""
    meta: dict[str, Any] = {"general.architecture": arch, f"{arch}.block_count": n_layer,
                            f"{arch}.embedding_length": 256, f"{arch}.vocab_size": 512}  # fmt: skip
    meta.update({f"{arch}.{k.replace('__', '.')}": v for k, v in keys.items()})
    return GGUFHeader(meta, (TensorInfo("token_embd.weight", (256, 512), "F16"),))


def test_qwen35_real_shapes() -> None:
    m = from_config(QWEN35_08B)
    assert m.n_layer == 25 and m.n_layer_mtp == 1  # 24 layers and the draft head, as llama.cpp counts
    attends = [(i + 1) % 4 == 0 for i in range(24)]
    assert m.recurrent_layers == (*(not a for a in attends), False)
    assert m.n_head_kv == (*(2 if a else 0 for a in attends), 0)  # no cache for the draft head
    assert m.recurrent is not None and m.recurrent.kind == "gated_delta_net"
    # n_embd_r = (d_conv - 1)(d_inner + 2·groups·d_state) = 3 · (2048 + 2·16·128); n_embd_s = 128 · 2048
    assert (m.conv_state_elements, m.ssm_state_elements) == (3 * 6144, 128 * 2048)


def test_lfm2_real_shapes() -> None:
    m = from_config(LFM2_350M)
    kinds = [t == "full_attention" for t in LFM2_350M["layer_types"]]
    assert m.recurrent_layers == tuple(not a for a in kinds)
    assert m.n_head_kv == tuple(8 if a else 0 for a in kinds)
    assert (m.conv_state_elements, m.ssm_state_elements) == (1024 * (3 - 1), 0)  # n_embd · (l_cache - 1)


def test_granite_hybrid_real_shapes() -> None:
    m = from_config(GRANITE_4_H_350M)
    assert sum(m.recurrent_layers) == 28 and [i for i, n in enumerate(m.n_head_kv) if n] == [10, 13, 17, 27]
    assert not any(m.recurrent_layers[i] for i in (10, 13, 17, 27))
    assert (m.conv_state_elements, m.ssm_state_elements) == (3 * (1536 + 2 * 128), 128 * 1536)


def test_dense_models_keep_their_defaults() -> None:
    m = info(header("llama", 4, attention__head_count=4, feed_forward_length=512))
    assert m.recurrent_layers == () and m.recurrent is None and not m.has_recurrent
    assert (m.conv_state_elements, m.ssm_state_elements, m.n_layer_mtp) == (0, 0, 0)
    assert m.n_head_kv == (4,) * 4


SSM = {"ssm__conv_kernel": 4, "ssm__inner_size": 512, "ssm__state_size": 64, "ssm__time_step_rank": 8}


def test_pure_mamba2_every_layer_recurrent_no_kv() -> None:
    m = info(header("mamba2", 3, attention__head_count=0, ssm__group_count=2, **SSM))
    assert m.recurrent_layers == (True,) * 3 and m.n_head_kv == (0,) * 3
    assert (m.conv_state_elements, m.ssm_state_elements) == (3 * (512 + 2 * 2 * 64), 64 * 512)


def test_falcon_h1_layers_attend_and_recur() -> None:
    m = info(
        header("falcon-h1", 2, attention__head_count=4, attention__head_count_kv=2, ssm__group_count=1, **SSM)
    )
    assert m.recurrent_layers == (True, True) and m.n_head_kv == (2, 2)


def test_jamba_has_no_groups_and_recurs_where_no_kv_heads() -> None:
    m = info(header("jamba", 3, attention__head_count=4, attention__head_count_kv=[0, 2, 0], **SSM))
    assert m.recurrent_layers == (True, False, True) and m.n_head_kv == (0, 2, 0)
    assert m.conv_state_elements == 3 * 512  # Mamba-1: no B/C groups in the convolution


def test_nemotron_h_ffn_only_layers_keep_nothing() -> None:
    m = info(header("nemotron_h", 3, attention__head_count=4, attention__head_count_kv=[0, 2, 0],
                    feed_forward_length=[0, 0, 1024], ssm__group_count=1, **SSM))  # fmt: skip
    assert m.recurrent_layers == (True, False, False) and m.n_head_kv == (0, 2, 0)


def test_qwen3next_interval_when_the_flags_are_absent() -> None:
    m = info(header("qwen3next", 6, attention__head_count=4, attention__head_count_kv=2,
                    full_attention_interval=3, ssm__group_count=2, **SSM))  # fmt: skip
    assert m.recurrent_layers == (True, True, False, True, True, False)
    assert m.n_head_kv == (0, 0, 2, 0, 0, 2)


def test_draft_head_of_a_dense_model_has_no_cache() -> None:
    m = info(header("glm4moe", 3, attention__head_count=4, nextn_predict_layers=1))
    assert m.n_head_kv == (4, 4, 0) and m.recurrent_layers == () and m.n_layer_mtp == 1


@pytest.mark.parametrize(
    ("arch", "keys", "named"),
    [
        ("qwen35", {"ssm__conv_kernel": "4"}, "qwen35.ssm.conv_kernel"),
        ("qwen35", {"ssm__state_size": 1 << 40}, "qwen35.ssm.state_size"),
        ("qwen35", {"ssm__group_count": None}, "qwen35.ssm.group_count"),
        ("qwen35", {"attention__recurrent_layers": [True, False]}, "qwen35.attention.recurrent_layers"),
        ("qwen35", {"attention__recurrent_layers": [1, 0, 1, 0]}, "qwen35.attention.recurrent_layers"),
        ("qwen35", {"full_attention_interval": 0}, "qwen35.full_attention_interval"),
        ("qwen35", {"nextn_predict_layers": 5}, "qwen35.nextn_predict_layers"),
        ("lfm2", {"shortconv__l_cache": None}, "lfm2.shortconv.l_cache"),
    ],
)
def test_corrupt_recurrent_keys_are_one_error_naming_the_key(
    arch: str, keys: dict[str, Any], named: str
) -> None:
    base = {"attention__head_count": 4, "attention__head_count_kv": [0, 2, 0, 2] if arch == "lfm2" else 2,
            "shortconv__l_cache": 3, "ssm__group_count": 2, **SSM}  # fmt: skip
    merged = {k: v for k, v in {**base, **keys}.items() if v is not None}
    with pytest.raises(CorruptModelError, match=named.replace(".", r"\.")):
        info(header(arch, 4, **merged))
