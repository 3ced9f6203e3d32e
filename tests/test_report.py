"""The accuracy plot: a title, labelled axes, a legend entry per split and for the control, labels that
never overlap, readable from 0 to 5 iterations (parsed as SVG, not eyeballed); the paths and
saturation preconditions."""
import xml.etree.ElementTree as ET

import pytest

from data.report import svg_plot

NS = {"svg": "http://www.w3.org/2000/svg"}
SPLITS = ["test", "ood-changed", "ood-distractors", "ood-long"]


def metrics_for(iterations):
    # Every split at nearly the same accuracy: line-end labels would sit on top of each other.
    m = {f"sft-{k}": {s: 40.0 + k + 0.1 * i for i, s in enumerate(SPLITS)} for k in range(iterations + 1)}
    return m | ({"control": {s: 41.0 for s in SPLITS}} if iterations else {})


@pytest.mark.parametrize("iterations", range(6))
def test_plot_has_title_axes_legend_and_no_overlapping_labels(iterations):
    root = ET.fromstring(svg_plot(metrics_for(iterations), iterations, SPLITS, "DPO-ST: greedy accuracy"))
    texts = root.findall("svg:text", NS)
    by_class = lambda c: [t for t in texts if t.get("class") == c]  # noqa: E731
    assert [t.text for t in by_class("title")] == ["DPO-ST: greedy accuracy"]
    assert [t.text for t in by_class("x-label")] == ["iteration (0 = SFT)"]
    assert [t.text for t in by_class("y-label")] == ["greedy accuracy (%)"]
    legend = by_class("legend")
    assert [t.text for t in legend] == SPLITS + ["control (dashed)"]
    ys = sorted(float(t.get("y")) for t in legend)
    assert all(b - a >= 14 for a, b in zip(ys, ys[1:])), ys  # 12px text: rows at least 14px apart
    width = float(root.get("width"))
    assert all(float(t.get("x")) < width - 100 for t in legend)  # room for the longest label
    ticks = [t.text for t in texts if t.get("class") is None and t.get("text-anchor") == "middle"]
    assert ticks == [str(k) for k in range(iterations + 1)]  # one tick per iteration, 0 = SFT
    # One point per model, a line per split; the control's dashed line only when it exists.
    assert len(root.findall("svg:circle", NS)) == len(SPLITS) * (iterations + 1)
    dashed = [line for line in root.findall("svg:line", NS) if line.get("stroke-dasharray")]
    assert len(dashed) == (len(SPLITS) if iterations else 0) + 1  # + the legend's sample


def test_new_path_share_counts_only_questions_with_a_gold_rationale(tmp_path):
    """Unlabeled questions (final answers only) have no gold path, so they must not count as 'another path'."""
    from data.formats import LLAMA
    from data.jsonl import write_jsonl
    from data.report import preconditions
    question = "Ann has 3 boxes of 4 pens and 5 more pens. How many pens does she have?"
    gold_path, other_path = "3*4=<<3*4=12>>12 pens in boxes. 12+5=<<12+5=17>>17", "4*3=<<4*3=12>>12 pens. 12+5=<<12+5=17>>17"
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "labeled.jsonl", [{"id": "a", "question": question, "answer": gold_path + "\n#### 17"}])
    sample = lambda qid, text: {"id": qid, "question": question, "completion": text + "\n#### 17", "correct": True}  # noqa: E731
    (tmp_path / "pseudo-1").mkdir()
    write_jsonl(tmp_path / "pseudo-1" / "samples.jsonl", [sample("a", gold_path), sample("a", other_path),
                                                          sample("u", other_path), sample("u", other_path)])
    (tmp_path / "pseudo-1" / "DONE").write_text("1\n")
    paths = preconditions(tmp_path, LLAMA)["paths"]
    assert paths["new_path_share_of_valid_samples"] == 0.5  # of labeled "a"'s two samples; "u" has no gold
    assert paths["distinct_valid_per_solved_question"] == 1.5 and paths["solved_questions"] == 2


@pytest.mark.parametrize("control_steps, about_steps", [(600, False), (900, True)])
def test_saturation_is_about_steps_only_when_the_control_trained_longer(tmp_path, control_steps, about_steps):
    from data.formats import LLAMA
    from data.report import precondition_lines, preconditions
    for stage, steps, dev in (("sft-0", 600, 40.0), ("control", control_steps, 45.0)):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "eval.json").write_text(f'{{"dev": {dev}}}')
        (tmp_path / stage / "steps").write_text(f"{steps}\n")
        (tmp_path / stage / "DONE").write_text("1\n")
    result = preconditions(tmp_path, LLAMA)
    assert result["saturation"] == {"control_minus_sft_dev": 5.0, "about_steps": about_steps,
                                    "same_steps_as_sft": not about_steps}
    line = next(line for line in precondition_lines(result) if "saturation" in line)
    assert ("seed noise" in line) == (not about_steps) and ("partly more steps" in line) == about_steps


def test_how_it_ran_weights_the_load_beside_by_each_stage_time_and_skips_unfinished_stages(tmp_path):
    import json
    from data.report import how_it_ran, peak_memory_gb
    for stage, seconds, beside, peak, done in (("sft-0", 300, 1.0, 1.5, True), ("pseudo-1", 100, 0.0, 1.2, True),
                                               ("sft-1", 50, 2.0, 3.0, False)):  # sft-1 was killed half-way
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "how_it_ran.json").write_text(json.dumps(
            {"machine": f"M{done}", "cores_busy_beside": beside, "peak_rss_gb": peak}))
        if done:
            (tmp_path / stage / "DONE").write_text(f"{seconds}\n")
    assert how_it_ran(tmp_path) == {"machines": ["MTrue"], "cores_busy_beside_mean": 0.75,
                                    "cores_busy_beside_most": 1.0}
    assert peak_memory_gb(tmp_path) == 1.5
    # Stages finished by an older version: one wrote its peak to a file of its own, one wrote none.
    for stage, old_peak in (("sft-2", "2.25\n"), ("sft-3", None)):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "how_it_ran.json").write_text(json.dumps({"machine": "MTrue", "cores_busy_beside": None}))
        if old_peak:
            (tmp_path / stage / "peak_rss_gb").write_text(old_peak)
        (tmp_path / stage / "DONE").write_text("10\n")
    assert peak_memory_gb(tmp_path) == 2.25


def test_stage_times_add_up_by_kind_and_the_line_leaves_out_kinds_under_a_second():
    from data.report import seconds_by_kind, stage_times_line
    metrics = {"seconds": {"data": 0.5, "base": 0.0, "sft-0": 10.0, "control": 20.0},
               "iterations": {"1": {"seconds": {"samples": 6.0, "dpo": 4.0, "pseudo": 5.0, "sft": 30.0}},
                              "2": {"seconds": {"samples": 6.0, "dpo": 4.0, "pseudo": 5.0, "sft": 29.5}}}}
    assert seconds_by_kind(metrics) == {"sft": 89.5, "samples": 12.0, "pseudo": 10.0, "dpo": 8.0, "data": 0.5,
                                        "base": 0.0}
    assert stage_times_line(metrics) == ("2.0 min in all: sft 1.5 min (75%), samples 0.2 min (10%), "
                                         "pseudo 0.2 min (8%), dpo 0.1 min (7%)")


def test_the_machine_s_busy_cpu_seconds_count_a_busy_loop():
    import time
    from conftest import skip_or_fail
    from loop import busy_cpu_seconds
    before, own = busy_cpu_seconds(), time.process_time()
    if before is None:
        skip_or_fail("no /proc/stat here (it is Linux's): the load beside a run is not measured")
    while time.process_time() - own < 0.5:
        pass
    assert busy_cpu_seconds() - before >= 0.4  # the machine's count holds this process's 0.5 s at least
