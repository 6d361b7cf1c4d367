"""Parallel multilingual tasks: a registry of loaders that yield :class:`ParallelExample` items.

>>> task = get_task("xnli")
>>> result = task.load(["en", "de"], split="test", num_examples=100, data_dir="../shared/data")
>>> result.examples[0].prompts["de"]
>>> examples = make_examples(prompts={"en": [...], "de": [...]}, answers={"en": [...], "de": [...]})  # any data
"""

from __future__ import annotations

from jaxneurons.tasks.base import DATA_DIR_ENV, LoadResult, ParallelExample, Task, TaskDataError
from jaxneurons.tasks.builtin import BuiltinFacts, BuiltinNLI
from jaxneurons.tasks.custom import FilesTask, examples_from_dataset, examples_from_files, make_examples
from jaxneurons.tasks.hub import HubUnavailableError
from jaxneurons.tasks.mpararel import MParaRel
from jaxneurons.tasks.mzsre import MzsRE
from jaxneurons.tasks.pawsx import PAWSX
from jaxneurons.tasks.xcopa import XCOPA
from jaxneurons.tasks.xnli import XNLI

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        XNLI(), PAWSX(), XCOPA(), MParaRel(), MzsRE("en2all"), MzsRE("all2en"), BuiltinNLI(), BuiltinFacts(),
        FilesTask(),
    )
}


def available_tasks() -> list[str]:
    """The names of the registered tasks, sorted."""
    return sorted(TASKS)


def get_task(name: str) -> Task:
    """The task registered under ``name``; ValueError listing the known names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}") from None


__all__ = [
    "DATA_DIR_ENV", "FilesTask", "HubUnavailableError", "LoadResult", "ParallelExample", "TASKS", "Task",
    "TaskDataError", "available_tasks", "examples_from_dataset", "examples_from_files", "get_task", "make_examples",
]
