"""The built-in catalog: every entry parses, describes itself correctly, and can be found."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from app.core.errors import ModelNotFoundError
from app.core.model.catalog import (
    CatalogEntry,
    find_by_gguf_repo,
    find_entry,
    find_entry_or_none,
    load_catalog,
    suggest,
)
from app.core.model.gguf_header import TensorInfo
from app.core.model.hf_arch import header_from_hf_config
from app.core.model.info import layer_of, model_info_from_header

# The models the catalog promises (the brief's list).
EXPECTED_IDS = {
    "llama-3.2-1b-instruct", "llama-3.2-3b-instruct", "llama-3.1-8b-instruct",
    "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "qwen2.5-7b-instruct",
    "qwen2.5-14b-instruct", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-30b-a3b",
    "gemma-2-2b-it", "gemma-2-9b-it", "gemma-3-270m-it", "gemma-3-1b-it", "gemma-3-4b-it", "gemma-3-12b-it",
    "mistral-7b-instruct-v0.3", "mistral-nemo-instruct-2407", "phi-3-mini-4k-instruct",
    "phi-3.5-mini-instruct", "phi-4", "smollm2-135m-instruct", "smollm2-360m-instruct", "smollm2-1.7b-instruct",
    # issue 16, part 4: the models people run now
    "qwen3.5-4b", "qwen3.5-9b", "qwen3.5-27b", "qwen3.5-35b-a3b", "qwen3.5-122b-a10b", "qwen3.6-27b",
    "qwen3.6-35b-a3b", "gpt-oss-20b", "gpt-oss-120b", "gemma-4-e2b-it", "gemma-4-e4b-it", "gemma-4-26b-a4b-it",
    "gemma-4-31b-it", "lfm2-350m", "lfm2-700m", "lfm2-1.2b", "lfm2-8b-a1b", "glm-4.5-air", "glm-4.7-flash",
    "mistral-small-3.2-24b-instruct-2506", "granite-4.0-h-350m",
}  # fmt: skip
ENTRIES = load_catalog()
# Routed experts, stacked: gate and up apart, or fused (Gemma 4).
_EXPERT = re.compile(r"\.ffn_(gate|up|gate_up|down)_exps\.weight$")


def _trunk(entry: CatalogEntry) -> tuple[TensorInfo, ...]:
    """The tensors a model card counts: all but a draft head's (multi-token prediction) blocks, which
    cards leave out and llama.cpp does not load unless asked for speculative decoding."""
    header = header_from_hf_config(entry.config)
    info = model_info_from_header(header, source=entry.id, source_kind="catalog")
    first_mtp = info.n_layer - info.n_layer_mtp
    return tuple(t for t in header.tensors if (layer_of(t.name) or 0) < first_mtp)


def test_catalog_ships_as_package_data() -> None:
    assert resources.files("app.core.model").joinpath("catalog.json").is_file()


def test_catalog_holds_the_promised_models_once_each() -> None:
    ids = [e.id for e in ENTRIES]
    assert len(ids) == len(set(ids))
    assert set(ids) == EXPECTED_IDS
    assert load_catalog() is load_catalog()  # parsed once


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_entry_fields_are_well_formed(entry: CatalogEntry) -> None:
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", entry.id)
    assert re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])", entry.released)
    assert 1 <= len(entry.gguf_repos) <= 3
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+", r) for r in (entry.hf_repo, *entry.gguf_repos))
    assert entry.license and entry.family and entry.name and entry.notes
    assert entry.params_b > 0


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_config_produces_the_stated_parameter_count(entry: CatalogEntry) -> None:
    header = header_from_hf_config(entry.config)
    n_params = sum(t.n_elements for t in _trunk(entry))
    assert n_params == pytest.approx(entry.params_b * 1e9, rel=0.03)
    info = model_info_from_header(header, source=entry.id, source_kind="catalog", name=entry.name)
    assert info.n_layer > 0 and info.n_vocab > 0 and info.n_ctx_train > 0


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.is_moe], ids=lambda e: e.id)
def test_moe_active_parameters_follow_from_the_tensor_table(entry: CatalogEntry) -> None:
    """Every parameter a token meets, the input embedding included (as Qwen's and Google's cards
    count; OpenAI's and Z.ai's leave it out, see the entries' notes): everything but the routed
    experts (shared experts and dense-first layers always run), plus their used share."""
    header = header_from_hf_config(entry.config)
    arch = header.architecture
    used = header.metadata[f"{arch}.expert_used_count"] / header.metadata[f"{arch}.expert_count"]
    trunk = _trunk(entry)
    experts = sum(t.n_elements for t in trunk if _EXPERT.search(t.name))
    rest = sum(t.n_elements for t in trunk if not _EXPERT.search(t.name))
    assert entry.active_params_b is not None
    assert rest + experts * used == pytest.approx(entry.active_params_b * 1e9, rel=0.03)
    assert entry.active_params_b < entry.params_b


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_exactly_the_moe_entries_have_an_active_count(entry: CatalogEntry) -> None:
    header = header_from_hf_config(entry.config)
    experts = header.metadata.get(f"{header.architecture}.expert_count") or 0
    assert entry.is_moe == (experts > 1)


@pytest.mark.parametrize("query", ["qwen3-8b", "QWEN3-8B", "Qwen3 8B", "qwen/qwen3-8b", " Qwen/Qwen3-8B "])
def test_find_entry_by_id_name_or_repo_in_any_case(query: str) -> None:
    assert find_entry(query).id == "qwen3-8b"


def test_find_entry_suggests_near_misses() -> None:
    with pytest.raises(ModelNotFoundError) as err:
        find_entry("llama 1b")
    assert err.value.hint is not None and "llama-3.2-1b-instruct" in err.value.hint
    with pytest.raises(ModelNotFoundError) as err:
        find_entry("qwen 2.5 7b")
    assert err.value.hint is not None and "qwen2.5-7b-instruct" in err.value.hint
    assert find_entry_or_none("xyzzy-13b") is None
    assert suggest("xyzzy") is None


def test_find_by_gguf_repo() -> None:
    entry = find_by_gguf_repo("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF".lower())
    assert entry is not None and entry.id == "llama-3.1-8b-instruct"
    assert find_by_gguf_repo("someone/unknown-GGUF") is None


def test_multimodal_entries_describe_the_text_model() -> None:
    header = header_from_hf_config(find_entry("gemma-3-4b-it").config)
    assert header.architecture == "gemma3"
    assert header.metadata["gemma3.block_count"] == 34
    assert {t.name: t.shape for t in header.tensors}["token_embd.weight"] == (2560, 262208)
