"""The Advisor against the real core and the real small models: the highlighted row is the core's
recommendation, the dials (context, GPU layers, "what if" RAM/VRAM) change the plans the way the
estimator says, the one button hands the plan on, and a first run shows the catalog."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt

from app.core.advice.policy import comfortable
from app.core.advice.recommend import advise, best_plan
from app.core.machine.hardware import detect_machine
from app.core.model.catalog import load_catalog
from app.core.model.source import load_model
from app.gui.context import AppContext
from app.gui.panels import advisor_compute as compute
from app.gui.panels.advisor import AdvisorPanel
from app.gui.panels.advisor_source import request_for_spec
from app.gui.panels.advisor_table import COL_FITS, COL_PICK, COL_TOK_S
from app.gui.workers import wait_for_workers

WAIT_MS = 20_000


@pytest.fixture(scope="module")
def profile():  # type: ignore[no-untyped-def]
    # No bandwidth probe: these tests compare the panel with the core on the same profile.
    return detect_machine(measure_bandwidth=False)


@pytest.fixture
def ctx(tmp_path: Path, profile) -> AppContext:  # type: ignore[no-untyped-def]
    context = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    context._profile = profile  # as if detection had finished (AppContext has no setter)
    return context


@pytest.fixture
def make_panel(qtbot, ctx: AppContext):  # type: ignore[no-untyped-def]
    panels: list[AdvisorPanel] = []

    def make(*, show: bool = False) -> AdvisorPanel:
        panel = AdvisorPanel(ctx)
        qtbot.addWidget(panel)
        panel.resize(1200, 900)
        if show:
            panel.show()
        panels.append(panel)
        return panel

    yield make
    for panel in panels:  # cancel what still runs and wait for it: no thread outlives the test
        panel.shutdown()
    wait_for_workers(WAIT_MS)


def _loaded(qtbot, panel: AdvisorPanel, spec: str) -> compute.AdvisorResult:  # type: ignore[no-untyped-def]
    panel.load(request_for_spec(spec))
    qtbot.waitUntil(lambda: panel.result is not None, timeout=WAIT_MS)
    assert panel.result is not None
    return panel.result


def _refreshed(qtbot, panel: AdvisorPanel, old: compute.AdvisorResult, **want) -> compute.AdvisorResult:  # type: ignore[no-untyped-def]
    def ready() -> bool:
        r = panel.result
        return r is not None and r is not old and all(getattr(r.query, k) == v for k, v in want.items())

    qtbot.waitUntil(ready, timeout=WAIT_MS)
    assert panel.result is not None
    return panel.result


def _fits_column(panel: AdvisorPanel) -> list[str]:
    return [panel.table.item(r, COL_FITS).text() for r in range(panel.table.rowCount())]


def test_recommended_row_is_the_cores_recommendation(make_panel, qtbot, smollm2_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel()
    result = _loaded(qtbot, panel, str(smollm2_path))
    expected = advise(load_model(str(smollm2_path)), panel.budget()).recommended
    assert expected is not None
    assert (result.recommended.quant, result.recommended.n_ctx) == (expected.quant, expected.n_ctx)
    row = panel.table.recommended_row
    assert panel.table.item(row, 0).text() == expected.quant
    assert "recommended" in panel.table.item(row, COL_PICK).text()
    assert panel.table.item(row, 0).font().bold()
    assert panel.n_ctx() == expected.n_ctx and "4,096 tokens" in panel.ctx_label.text()
    # the selected row starts at the recommendation; slider, table and details move together
    assert panel.selected_plan().quant == expected.quant
    assert panel.precision_slider.value() == row
    assert expected.quant in panel.reasons_label.text()
    panel.precision_slider.setValue(0)
    assert panel.table.currentRow() == 0
    assert panel.detail.text().startswith(panel.table.plans[0].quant)
    assert panel.table.plans[0].file_bytes <= panel.table.plans[-1].file_bytes
    # every control can be told apart by a screen reader
    for widget in (panel.ctx_slider, panel.ngl_spin, panel.precision_slider, panel.ram_spin, panel.vram_spin,
                   panel.table, panel.memory_bar, panel.action_button, panel.picker):  # fmt: skip
        assert widget.accessibleName()
        assert widget.focusPolicy() != Qt.FocusPolicy.NoFocus


def test_a_longer_context_grows_the_kv_cache_in_the_bar_and_the_table(  # type: ignore[no-untyped-def]
    make_panel, qtbot, smollm2_path: Path
) -> None:
    panel = make_panel()
    before = _loaded(qtbot, panel, str(smollm2_path))
    quant = panel.selected_plan().quant
    kv_before = panel.memory_bar.bars[0].share("KV cache")
    ram_before = before.plan_for(quant).ram_bytes
    panel.ctx_slider.setValue(panel.ctx_slider.maximum())  # the model's training context
    after = _refreshed(qtbot, panel, before, n_ctx=8192)
    assert panel.selected_plan().quant == quant  # the user's precision stays where it was
    assert panel.memory_bar.bars[0].share("KV cache") > kv_before
    assert after.plan_for(quant).ram_bytes > ram_before
    assert (
        after.plan_for(quant).estimate.device("CPU").kv_bytes
        == 2 * before.plan_for(quant).estimate.device("CPU").kv_bytes
    )
    assert all(p.n_ctx == 8192 for p in after.plans) and "8,192 tokens" in panel.ctx_label.text()


def test_a_tiny_what_if_ram_leaves_nothing_that_fits(make_panel, qtbot, smollm2_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel()
    before = _loaded(qtbot, panel, str(smollm2_path))
    panel.ram_spin.setValue(1.0)  # 1 GB: the OS keeps a quarter, the advisor's headroom the rest
    after = _refreshed(qtbot, panel, before)
    assert after.query.budget.ram_bytes < before.query.budget.ram_bytes
    assert after.recommended is None
    assert set(_fits_column(panel)) == {"Does not fit"}
    assert "does not fit" in panel.reasons_label.text()
    assert not panel.action_button.isEnabled()
    assert panel.memory_bar.bars[0].total_bytes > panel.memory_bar.bars[0].capacity_bytes


def test_fixed_gpu_layers_on_a_what_if_gpu_split_the_model(make_panel, qtbot, smollm2_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel()
    first = _loaded(qtbot, panel, str(smollm2_path))
    panel.vram_spin.setValue(4.0)
    on_gpu = _refreshed(qtbot, panel, first, n_gpu_layers=None)
    assert on_gpu.query.budget.gpus and panel.ngl_spin.isEnabled()
    assert on_gpu.recommended is not None and on_gpu.recommended.fits == "gpu"
    assert [b.label for b in panel.memory_bar.bars] == ["RAM", "VRAM"]
    panel.ngl_spin.setValue(10)
    split = _refreshed(qtbot, panel, on_gpu, n_gpu_layers=10)
    assert {p.fits for p in split.plans} == {"partial"}
    assert {p.n_gpu_layers for p in split.plans} == {10}
    assert set(_fits_column(panel)) == {"Partly on the GPU"}
    assert "10 layers" in panel.detail.text()
    vram = panel.memory_bar.bars[1]
    assert 0 < vram.total_bytes < on_gpu.plan_for(panel.selected_plan().quant).vram_bytes


def test_a_fixed_split_is_estimated_like_the_advisors_own(smollm2_path: Path, profile) -> None:  # type: ignore[no-untyped-def]
    model = load_model(str(smollm2_path))
    # the smallest what-if GPU that holds some of the layers but not all (the estimator decides where)
    split = None
    for tenths in range(5, 60):
        budget = compute.budget_for(profile, vram_gb=tenths / 10)
        auto = best_plan(model, "Q8_0", 4096, budget)
        if auto.fits == "partial":
            split = (budget, auto)
            break
    assert split is not None, "no what-if VRAM between 0.5 and 6 GB splits SmolLM2"
    budget, auto = split
    same = compute.plan_with_layers(model, auto, budget, auto.n_gpu_layers)
    assert same.estimate == auto.estimate and same.fits == auto.fits and same.speed == auto.speed
    assert compute.plan_with_layers(model, auto, budget, model.n_layer + 1).fits == "no"  # more than fit
    assert compute.context_steps(model) == [512, 1024, 2048, 4096, 8192]


def test_chat_with_it_hands_the_files_plan_to_the_chat_panel(make_panel, qtbot, smollm2_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel()
    result = _loaded(qtbot, panel, str(smollm2_path))
    own = result.plan_for("Q4_1")  # the file's own type is what would run
    assert own is not None and panel.action_button.isEnabled()
    assert panel.action_button.text().startswith(
        "Chat with it" if result.recommended.quant == "Q4_1" else "Chat with the file you have (Q4_1"
    )
    shown: list[str] = []
    panel.ctx.show_panel.connect(shown.append)
    with qtbot.waitSignal(panel.ctx.open_chat, timeout=WAIT_MS) as sig:
        qtbot.mouseClick(panel.action_button, Qt.MouseButton.LeftButton)
    path, load = sig.args
    assert path == str(smollm2_path)
    assert load == {"n_ctx": own.n_ctx, "n_gpu_layers": own.n_gpu_layers, "type_k": own.type_k,
                    "predicted": {"ram_bytes": own.ram_bytes, "vram_bytes": own.vram_bytes}}  # fmt: skip
    assert shown == ["chat"]


def test_first_run_lists_what_the_catalog_offers_this_machine(make_panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel(show=True)
    with qtbot.waitSignal(panel.overview.ready, timeout=WAIT_MS):
        pass
    table = panel.overview.table
    assert panel.stack.currentWidget() is panel.overview
    assert table.rowCount() == len(load_catalog())
    names = {table.item(r, 0).text() for r in range(table.rowCount())}
    assert {e.name for e in load_catalog()} == names
    assert table.item(0, 3).text() != "Does not fit"  # what runs comes first
    # choosing one opens its plans; the button offers the recommended quant from its GGUF repo
    smol = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == "SmolLM2 135M Instruct")
    table.itemActivated.emit(table.item(smol, 0))
    qtbot.waitUntil(lambda: panel.result is not None, timeout=WAIT_MS)
    assert panel.stack.currentIndex() == 1
    rec = panel.result.recommended
    assert panel.action_button.text() == f"Download {rec.quant} and chat"
    with qtbot.waitSignal(panel.pull_requested, timeout=WAIT_MS) as sig:
        panel.action_button.click()
    [pull] = sig.args
    entry = next(e for e in load_catalog() if e.name == "SmolLM2 135M Instruct")
    assert pull == {"repo_id": entry.gguf_repos[0], "quant": rec.quant, "n_ctx": 4096,
                    "n_gpu_layers": rec.n_gpu_layers}  # fmt: skip


def test_a_model_the_library_picked_is_sized_up(make_panel, qtbot, gemma3_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel(show=True)
    panel.advise_path(str(gemma3_path))  # the Library panel's "Advise", through the window
    qtbot.waitUntil(lambda: panel.result is not None, timeout=WAIT_MS)
    assert panel.model is not None and panel.model.source == str(gemma3_path)
    assert panel.stack.currentIndex() == 1  # its plans, not the catalog overview
    assert compute.context_steps(panel.model)[-1] == panel.model.n_ctx_train == 32768


def test_a_hub_gguf_is_sized_from_its_header_and_queued_for_download(  # type: ignore[no-untyped-def]
    make_panel, qtbot, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    from tests.fake_hub import fake_hub

    name = "SmolLM2-135M-Instruct-Q4_1.gguf"
    with fake_hub({"acme/SmolLM2-135M-GGUF": {name: smollm2_path}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        panel = make_panel()
        picker = panel.picker
        picker.hub_query.setText("smollm2")
        picker.search_hub()
        qtbot.waitUntil(lambda: picker.hub_repos.count() == 1, timeout=WAIT_MS)
        picker.hub_repos.setCurrentRow(0)
        qtbot.waitUntil(lambda: picker.hub_files.count() == 1, timeout=WAIT_MS)
        picker.hub_files.itemActivated.emit(picker.hub_files.item(0))
        qtbot.waitUntil(lambda: panel.result is not None, timeout=WAIT_MS)
    assert panel.model.source_kind == "hf_gguf" and panel.model.file_type == "Q4_1"
    rec = panel.result.recommended
    assert rec is not None and rec.quant != "Q4_1"  # the ★ is another quantization of the repo
    assert panel.action_button.text().startswith("Download this file and chat (Q4_1")
    with qtbot.waitSignal(panel.pull_requested, timeout=WAIT_MS) as sig:
        panel.action_button.click()
    [pull] = sig.args
    assert (
        pull["repo_id"] == "acme/SmolLM2-135M-GGUF" and pull["filename"] == name and pull["quant"] == "Q4_1"
    )
    # … and the second button fetches the ★ quantization from the same repo
    assert panel.action_bar.alternative_button.text() == f"Download {rec.quant} and chat"
    with qtbot.waitSignal(panel.pull_requested, timeout=WAIT_MS) as sig:
        panel.action_bar.alternative_button.click()
    assert sig.args[0] == {"repo_id": "acme/SmolLM2-135M-GGUF", "quant": rec.quant, "n_ctx": rec.n_ctx,
                           "n_gpu_layers": rec.n_gpu_layers}  # fmt: skip


def test_a_checkpoint_folder_offers_conversion_at_the_chosen_precision(  # type: ignore[no-untyped-def]
    make_panel, qtbot, tmp_path: Path
) -> None:
    from tests.core.model.test_source import SMOLLM2_CONFIG

    folder = tmp_path / "SmolLM2-135M-Instruct"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))  # sized from its config alone
    panel = make_panel()
    result = _loaded(qtbot, panel, str(folder))
    assert panel.model.source_kind == "hf_dir"
    row = panel.table.row_of("Q5_K_M")
    panel.precision_slider.setValue(row)
    assert panel.action_button.text() == "Convert to Q5_K_M" and panel.action_button.isEnabled()
    with qtbot.waitSignal(panel.convert_requested, timeout=WAIT_MS) as sig:
        panel.action_button.click()
    assert sig.args == [str(folder), "Q5_K_M"] and result.plan_for("Q5_K_M") is not None


def test_the_panel_waits_for_the_hardware_profile(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    panel = AdvisorPanel(ctx)  # no profile yet: it asks the context to detect one
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.profile is not None, timeout=WAIT_MS)
    assert panel.budget_label.text().startswith("Plans may use")
    assert panel.ngl_spin.isEnabled() == bool(panel.budget().gpus and panel.budget().can_offload)
    panel.shutdown()
    wait_for_workers(WAIT_MS)


# --- one rule for the words, the table and the button (issue 14, item 5) ----------------------


def _tok_s_cells(panel: AdvisorPanel) -> dict[str, str]:
    return {
        panel.table.item(r, 0).text(): panel.table.item(r, COL_TOK_S).text()
        for r in range(panel.table.rowCount())
    }


def _check_words_against_table(panel: AdvisorPanel) -> None:
    """Every speed the reasons give is the table's figure for that row; nothing is rejected for
    being slow while the ★ row is no faster."""
    result = panel.result
    rec = result.recommended
    cells = _tok_s_cells(panel)
    text = panel.reasons_label.text()
    assert "about 0 tokens/s" not in text
    if rec is None:
        return
    assert f"Speed: about {cells[rec.quant]} tokens/s" in text
    assert "★" in panel.table.item(panel.table.row_of(rec.quant), COL_PICK).text()
    for m in re.finditer(r"(Q\w+|F16) would also fit.*?~([\d.,<]+) tokens/s", text):
        assert m[2] == cells[m[1]], m[0]
        assert result.plan_for(m[1]).speed.tok_s < rec.speed.tok_s, m[0]
        if "below a comfortable" in m[0]:
            assert comfortable(rec.speed.tok_s)
    if not comfortable(rec.speed.tok_s):
        assert "below a comfortable" not in text and "Nothing reaches a comfortable 5 tokens/s" in text
    # the selected row's sentence rounds as the table does
    p = panel.selected_plan()
    assert f"about {cells[p.quant]} tokens/s" in panel.detail.text()


def test_double_clicking_a_catalog_model_moves_the_picker_to_it(make_panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel(show=True)
    with qtbot.waitSignal(panel.overview.ready, timeout=WAIT_MS):
        pass
    table = panel.overview.table
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == "Llama 3.1 8B Instruct")
    table.scrollToItem(table.item(row, 0))
    assert panel.picker.catalog_combo.currentData() != "llama-3.1-8b-instruct"
    at = table.visualItemRect(table.item(row, 0)).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=at)  # a double-click: press,
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=at)  # release, press again
    qtbot.waitUntil(lambda: panel.result is not None, timeout=WAIT_MS)
    assert panel.model.source == "llama-3.1-8b-instruct"
    assert panel.picker.currentIndex() == 0  # the Catalog tab
    assert panel.picker.catalog_combo.currentData() == "llama-3.1-8b-instruct"
    assert panel.picker.catalog_combo.currentText().startswith("Llama 3.1 8B Instruct")
    assert "Llama 3.1 8B Instruct" in panel.heading.text()


def test_the_words_the_table_and_the_button_agree_on_many_budgets(make_panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel()
    result = _loaded(qtbot, panel, "llama-3.1-8b-instruct")
    for ram_gb in (6.0, 9.0, 16.0, 32.0):  # from "nothing good fits" to "everything fits"
        panel.ram_spin.setValue(ram_gb)
        result = _refreshed(qtbot, panel, result)
        _check_words_against_table(panel)
        rec = result.recommended
        if rec is not None:  # the button offers the ★ row, which starts selected
            assert panel.action_button.text() == f"Download {rec.quant} and chat"
    panel.ctx_slider.setValue(panel.ctx_slider.maximum())  # the longest context: "about 0" once
    result = _refreshed(qtbot, panel, result, n_ctx=131072)
    assert "(the most it was trained on)" in panel.ctx_label.text()
    _check_words_against_table(panel)


def test_a_local_file_that_is_not_the_pick_says_why_and_offers_the_pick(  # type: ignore[no-untyped-def]
    make_panel, qtbot, smollm2_path: Path
) -> None:
    panel = make_panel()
    result = _loaded(qtbot, panel, str(smollm2_path))
    rec = result.recommended
    assert rec is not None and rec.quant != "Q4_1"  # Q8_0 here: 16 GB of RAM is not needed for it
    assert "this file" in panel.table.item(panel.table.row_of("Q4_1"), COL_PICK).text()
    assert "★" in panel.table.item(panel.table.row_of(rec.quant), COL_PICK).text()
    assert panel.action_button.text() == "Chat with the file you have (Q4_1, 4,096 tokens)"
    note = panel.action_bar.note
    assert note.isVisibleTo(panel) and note.text().startswith(f"{rec.quant} (")
    assert "would fit and be better" in note.text() and note.text().endswith("Download it?")
    cells = _tok_s_cells(panel)
    assert f"~{cells[rec.quant]} tokens/s" in note.text() and f"~{cells['Q4_1']} tokens/s" in note.text()
    alt = panel.action_bar.alternative_button
    assert alt.isVisibleTo(panel) and alt.text() == f"Download {rec.quant} and chat"
    with qtbot.waitSignal(panel.pull_requested, timeout=WAIT_MS) as sig:
        alt.click()
    [pull] = sig.args
    assert pull == {"repo_id": "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "quant": rec.quant,
                    "n_ctx": rec.n_ctx, "n_gpu_layers": rec.n_gpu_layers}  # fmt: skip
    # the title is a human name, not the file's raw general.name
    assert "SmolLM2 135M Instruct" in panel.heading.text()
    assert panel.model.name not in panel.heading.text()  # "Smollm2 135M 8k Lc100K Mix1 Ep2"
    # the file that is the pick needs no note
    panel.ram_spin.setValue(0.6)  # so little that nothing fits: no ★ to compare with
    _refreshed(qtbot, panel, result)
    assert not panel.action_button.isEnabled() and not alt.isVisibleTo(panel)


def test_every_column_explains_itself(make_panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel(show=True)
    for table in (panel.table, panel.overview.table):
        for col in range(table.columnCount()):
            header = table.horizontalHeaderItem(col)
            assert header.text() and len(header.toolTip()) > 30, header.text()
    tips = {panel.table.horizontalHeaderItem(c).text(): panel.table.horizontalHeaderItem(c).toolTip()
            for c in range(panel.table.columnCount())}  # fmt: skip
    assert "KL divergence" in tips["KLD"] and "most likely next token" in tips["Same top token"]
    assert "tailorlm quality" in tips["Measured here"]
    with qtbot.waitSignal(panel.overview.ready, timeout=WAIT_MS):
        pass


def test_the_hub_tab_labels_its_lists_and_says_what_goes_in_them(make_panel) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QLabel

    picker = make_panel().picker
    buddies = {label.buddy(): label.text() for label in picker.findChildren(QLabel) if label.buddy()}
    assert buddies[picker.hub_repos] == "&Repos" and buddies[picker.hub_files] == "GGUF fi&les"
    for lst in (picker.hub_repos, picker.hub_files):
        assert lst.count() == 0 and lst.empty_text()
        assert lst.accessibleDescription() == lst.empty_text()  # what a screen reader says when empty
    assert "Search" in picker.hub_repos.empty_text() and "repo" in picker.hub_files.empty_text()


def test_a_model_without_a_trained_length_is_planned_with_a_warning(  # type: ignore[no-untyped-def]
    make_panel, qtbot, smollm2_path: Path
) -> None:
    from dataclasses import replace

    from app.gui.panels.advisor_source import ModelRequest

    def load():  # type: ignore[no-untyped-def]
        return replace(load_model(str(smollm2_path)), n_ctx_train=0)  # a GGUF that omits context_length

    panel = make_panel()
    panel.load(ModelRequest("no-length.gguf", "file", load))
    qtbot.waitUntil(lambda: panel.result is not None, timeout=WAIT_MS)
    assert "trained context unknown" in panel.heading.text()
    assert "does not say how long a context it was trained on" in panel.reasons_label.text()


def test_first_run_ends_in_download_this_one(make_panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel(show=True)
    with qtbot.waitSignal(panel.overview.ready, timeout=WAIT_MS):
        pass
    ov = panel.overview
    best = ov.rows[ov.table.currentRow()]
    assert best is next(r for r in ov.rows if r.plan is not None)  # the best row is selected
    assert (
        ov.download_button.isEnabled() and ov.download_button.text() == f"Download {best.plan.quant} and chat"
    )
    assert ov.pick_label.text().startswith(f"Best for this machine: {best.entry.name} as {best.plan.quant}")
    with qtbot.waitSignal(panel.pull_requested, timeout=WAIT_MS) as sig:
        ov.download_button.click()
    [pull] = sig.args
    assert pull == {"repo_id": best.entry.gguf_repos[0], "quant": best.plan.quant, "n_ctx": 4096,
                    "n_gpu_layers": best.plan.n_gpu_layers}  # fmt: skip
    other = next(i for i, r in enumerate(ov.rows) if r.plan is not None and r is not best)
    ov.table.setCurrentCell(other, 0)  # another row: the call to action follows it
    assert ov.pick_label.text().startswith(f"Selected: {ov.rows[other].entry.name}")
