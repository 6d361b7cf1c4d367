"""What the sharing pass leaves in output_dir: sharing.json, examples.npz, figures/*.png, its report section
(sections/sharing.md, composed into report.md), flags.txt."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from jaxneurons.analysis import (
    atomic_path,
    overlap_result,
    plot_all,
    summarize,
    write_json_atomic,
    write_text_atomic,
)
from jaxneurons.analysis.bootstrap import DEFAULT_RESAMPLES
from jaxneurons.analysis.report import FIGURES_DIR, sharing_section, write_section
from jaxneurons.analysis.statistics import accuracy_detail, mark_uninformative, predicted_options
from jaxneurons.pipeline.scoring import accuracy_per_language, judge
from jaxneurons.pipeline.state import RunState

SHARING_FILE = "sharing.json"
EXAMPLES_FILE = "examples.npz"
FLAGS_FILE = "flags.txt"


def write_flags(output_dir: str | os.PathLike, flags_text: str) -> str:
    """flags.txt: the run's flags as a flagfile (`--flagfile=flags.txt` reruns it)."""
    return write_text_atomic(os.path.join(output_dir, FLAGS_FILE), flags_text.rstrip("\n") + "\n")


def summarize_sharing(state: RunState, *, task, examples: Sequence, languages: Sequence[str],
                      thresholds: Sequence[float], run_facts: dict, bootstrap: int = DEFAULT_RESAMPLES) -> dict:
    """The sharing dict of sharing.json from a finished state (pure: judges the answers, writes nothing).

    run_facts: the keys sharing.json carries besides the statistics (model, task, neuron position, ...).
    bootstrap: resamples for the 95% intervals (0: none).
    """
    correct_en, predicted_en = judge_state(state, task, examples, languages)
    neurons_per_layer = state.overlap.first_code.shape[-1]
    sharing = summarize(state.category_counts_eklc, state.activated_eknl, thresholds, languages, neurons_per_layer,
                        correct_bn=correct_en, overlap_kcl=np.asarray(overlap_result(state.overlap)),
                        bootstrap=bootstrap)
    sharing.update(run_facts)
    sharing.update(
        languages=list(languages),
        num_examples=len(examples),
        num_layers=int(state.category_counts_eklc.shape[2]),
        neurons_per_layer=int(neurons_per_layer),
        accuracy=accuracy_per_language(correct_en, languages),
        accuracy_detail=accuracy_detail(correct_en, predicted_en, _num_options(examples, languages, task.scoring),
                                        languages, _option_names(examples, languages), bootstrap),
        bootstrap=bootstrap,
        padding_ratio=state.padding_ratio,
        examples_per_second=len(examples) / state.elapsed_s if state.elapsed_s > 0 else None,
    )
    mark_uninformative(sharing, sharing["accuracy_detail"])
    return sharing


def write_sharing(output_dir: str | os.PathLike, sharing: dict, state: RunState, *, task, examples: Sequence,
                  languages: Sequence[str], thresholds: Sequence[float], figures: bool = True) -> dict:
    """Write the sharing pass's files: figures/*.png, examples.npz, sharing.json and its report section.

    Returns sharing with "figures" (name -> path relative to output_dir) added, as written to sharing.json.
    """
    paths = plot_all(sharing, os.path.join(output_dir, FIGURES_DIR)) if figures else {}
    sharing = {**sharing, "figures": {name: os.path.relpath(path, output_dir) for name, path in paths.items()}}
    correct_en, predicted_en = judge_state(state, task, examples, languages)
    write_examples(output_dir, state, examples, languages, thresholds, correct_en, predicted_en)
    write_json_atomic(os.path.join(output_dir, SHARING_FILE), sharing)
    write_section(output_dir, "sharing", sharing_section(sharing, paths, output_dir))
    return sharing


def judge_state(state: RunState, task, examples: Sequence, languages: Sequence[str]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(correct [E, N], predicted option [E, N], -1 for open answers) from a state's scores."""
    correct_en = judge(task, state.option_logprobs_eno, state.greedy_match_en, examples, languages)
    predicted_en = predicted_options(state.option_logprobs_eno) if task.scoring == "options" \
        else np.full(correct_en.shape, -1)
    return correct_en, predicted_en


def write_examples(output_dir: str | os.PathLike, state: RunState, examples: Sequence, languages: Sequence[str],
                   thresholds: Sequence[float], correct_en: np.ndarray, predicted_en: np.ndarray | None = None) -> str:
    """examples.npz: the per-example arrays, in the caller's example order (no pickled objects)."""
    path = os.path.join(output_dir, EXAMPLES_FILE)
    arrays = {
        "category_counts": state.category_counts_eklc,  # [E, K, L, 4] int32, order of analysis.CATEGORIES
        "activated": state.activated_eknl,  # [E, K, N, L] int32
        "correct": correct_en,  # [E, N] bool
        "predicted": (np.full(correct_en.shape, -1) if predicted_en is None else predicted_en).astype(np.int32),
        # [E, N] the predicted option (argmax of option_logprobs), -1 for open answers
        "gold_logprob": state.gold_logprob_en,  # [E, N] float32
        "greedy_match": state.greedy_match_en,  # [E, N] bool
        "option_logprobs": state.option_logprobs_eno,  # [E, N, O] float32, NaN where an example has fewer
        "ids": np.array([ex.id for ex in examples], dtype=str),
        "thresholds": np.asarray(thresholds, np.float32),
        "languages": np.array(list(languages), dtype=str),
    }
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _num_options(examples: Sequence, languages: Sequence[str], scoring: str) -> np.ndarray:
    """[E, N] the number of answer options (0 for open answers, where chance is not defined)."""
    if scoring != "options":
        return np.zeros((len(examples), len(languages)), np.int64)
    return np.array([[len(ex.options[lang]) for lang in languages] for ex in examples], np.int64)


def _option_names(examples: Sequence, languages: Sequence[str]) -> dict | None:
    """language -> the option texts, when every example has the same ones (to name the majority answer)."""
    if not examples or examples[0].options is None:
        return None
    return {lang: examples[0].options[lang] for lang in languages
            if all(ex.options[lang] == examples[0].options[lang] for ex in examples)}
