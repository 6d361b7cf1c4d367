"""The steering pass's files, figure and report section, from its summary: `steering_figure` builds the Figure
(prompt language x set language heatmaps), `write_steering` writes steering.json, generations.jsonl, the PNG
and the report section."""

from __future__ import annotations

import json
import os

import numpy as np
from matplotlib.figure import Figure

from jaxneurons.analysis.figures import _finish, _new_figure, save_figure
from jaxneurons.analysis.intervals import ci_text, num_text
from jaxneurons.analysis.io import write_text_atomic
from jaxneurons.analysis.report import FIGURES_DIR, write_section

STEERING_FIGURE = "steering.png"


def steering_figure(steering: dict) -> Figure:
    """Per action: for prompts in language A (rows) with language B's neurons changed (columns), the off-target
    rate (off) or the share of outputs in B (boost), in %; the clean condition in the last column."""
    meta, per = steering["meta"], steering["per_language"]
    rows, cols = meta["prompt_languages"], meta["set_languages"]
    actions = meta["config"]["actions"]
    fig, axes = _new_figure(len(actions))
    for ax, action in zip(axes, actions):
        def value(a, b):
            entry = per[a][f"{action}:{b}" if b != "clean" else "clean"]
            stat = entry["off_target"] if action == "off" else entry["shares"][a if b == "clean" else b]
            return np.nan if stat["value"] is None else stat["value"]

        grid = np.array([[value(a, b) for b in [*cols, "clean"]] for a in rows])
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "" if np.isnan(v) else f"{v:.0f}", ha="center", va="center", fontsize="small",
                    color="white" if v < 60 else "black")
        ax.set_xticks(range(len(cols) + 1), [*cols, "clean"])
        ax.set_yticks(range(len(rows)), rows)
        ax.set(xlabel=f"neurons {'deactivated' if action == 'off' else 'boosted'} (language)",
               ylabel="prompt language",
               title="off-target outputs (%)" if action == "off" else "outputs in the boosted language (%)")
        fig.colorbar(image, ax=ax, shrink=0.8)
    low, high = min(meta["n_prompts"].values()), max(meta["n_prompts"].values())
    fig.suptitle(f"Steering: {meta.get('model', '')}, {low if low == high else f'{low} to {high}'} prompts a language")
    return _finish(fig)


def steering_section(steering: dict, figure: str | None, output_dir: str) -> str:
    meta, per = steering["meta"], steering["per_language"]
    lines = ["## Language steering (generation under interventions)", "",
             f"Greedy generation of {meta['config']['max_new_tokens']} tokens from each language's prompts "
             f"(n per language: {', '.join(f'{k} {v}' for k, v in meta['n_prompts'].items())}), with a language's "
             f"neurons zeroed (off) or multiplied by {meta['config']['boost']} (boost) at every token; output "
             f"language by {meta['language_id']}. Intervals: {meta['interval']}.", "",
             "| prompt | condition | off-target | in prompt language | in set language | vs random | vs magnitude-matched |",
             "|---|---|---|---|---|---|---|"]
    for lang, conditions in per.items():
        for name, entry in conditions.items():
            if ":s" in name:
                continue
            in_set = ci_text(entry["shares"][name.split(":")[1]]) if ":" in name else "-"
            versus = [_versus(entry, c, "off_target" if name.startswith("off") else "in_set_language")
                      for c in ("random", "matched")]
            lines.append(f"| {lang} | {name} | {ci_text(entry['off_target'])} | {ci_text(entry['shares'][lang])} | "
                         f"{in_set} | {versus[0]} | {versus[1]} |")
    for control, what in (("random", "count-matched only"), ("matched", "|m|-matched: near 1 when matched")):
        ratios = [m["mean_abs_m_ratio"] for name, m in steering["matching"].items()
                  if name.startswith(control) and m["mean_abs_m_ratio"] is not None and m["size"]]
        if ratios:
            lines += ["", f"{control} controls' mean |m| / their set's: {num_text(min(ratios))} to "
                          f"{num_text(max(ratios))} ({what})."]
    lines += ["", "The 'vs' columns: the action minus its control in percentage points (off: off-target rate; "
                  "boost: share in the boosted language), paired over prompts, 95% interval, sign-test p."]
    if figure:
        lines += ["", f"![steering]({os.path.relpath(figure, output_dir)})"]
    return "\n".join(lines) + "\n"


def _versus(entry: dict, control: str, key: str) -> str:
    found = entry.get("against_controls", {}).get(control, {}).get(key)
    if not found:
        return "n/a"
    return f"{ci_text(found['difference'], ' pp')}, p={found['sign_test_p']:.2g}"


def write_steering(output_dir: str, steering: dict, rows: list[dict], figures: bool = True) -> None:
    from jaxneurons.pipeline.outputs import write_result_json

    write_result_json(os.path.join(output_dir, "steering.json"), steering)
    write_text_atomic(os.path.join(output_dir, "generations.jsonl"),
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    figure = save_figure(steering_figure(steering), os.path.join(output_dir, FIGURES_DIR, STEERING_FIGURE)) \
        if figures else None
    write_section(output_dir, "steering", steering_section(steering, figure, output_dir))
