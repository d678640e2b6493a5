"""The name the advisor shows: the catalog's for a file it recognises, else the file's own name
without its quantization tag, and the GGUF's raw ``general.name`` only when the file's name says
nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.core.advice.naming import catalog_entry_for, display_name, name_from_file
from app.core.model.catalog import find_entry
from app.core.model.source import load_model, model_from_catalog


def test_a_catalog_model_file_gets_the_catalog_name(smollm2_path: Path) -> None:
    model = load_model(str(smollm2_path))
    assert model.name == "Smollm2 135M 8k Lc100K Mix1 Ep2"  # the raw general.name, as written
    assert display_name(model) == "SmolLM2 135M Instruct"
    entry = catalog_entry_for(model)
    assert entry is not None and entry.id == "smollm2-135m-instruct" and entry.gguf_repos


def test_a_base_model_is_not_taken_for_its_instruct_version(gemma3_path: Path) -> None:
    model = load_model(str(gemma3_path))  # Gemma-3-270M (base): the catalog lists the -it model
    assert catalog_entry_for(model) is None
    assert display_name(model) == "Gemma 3 270m"  # the file says "gemma-3-270m": the header's casing


def test_a_file_named_by_its_hash_falls_back_to_the_header(smollm2_path: Path) -> None:
    model = replace(load_model(str(smollm2_path)), source=f"/store/blobs/sha256-{'ab' * 32}")
    assert name_from_file(model.source) is None
    assert display_name(model) == model.name  # nothing better is known


def test_file_names_lose_their_quantization_and_split_tags() -> None:
    assert name_from_file("/m/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf") == "Meta Llama 3.1 8B Instruct"
    assert name_from_file("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf") == "qwen2.5 7b instruct"
    assert name_from_file("Phi-3.5-mini-instruct-UD-Q4_K_XL.gguf") == "Phi 3.5 mini instruct"
    assert name_from_file("C:\\models\\Mistral-7B-Instruct-v0.3.IQ4_XS.gguf") == "Mistral 7B Instruct v0.3"


def test_look_alike_catalog_models_are_told_apart_by_name() -> None:
    # Phi-3 mini and Phi-3.5 mini have the same shapes and family: the file name decides
    base = model_from_catalog(find_entry("phi-3.5-mini-instruct"))
    for file, expected in (("Phi-3.5-mini-instruct-Q4_K_M.gguf", "phi-3.5-mini-instruct"),
                           ("Phi-3-mini-4k-instruct-q4.gguf", "phi-3-mini-4k-instruct")):  # fmt: skip
        model = replace(base, source=f"/models/{file}", source_kind="gguf", name="phi3")
        entry = catalog_entry_for(model)
        assert entry is not None and entry.id == expected, file
