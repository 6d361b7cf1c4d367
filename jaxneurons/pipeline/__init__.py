"""The sharing-analysis pipeline: batches of parallel examples through a jitted step, resumable, to files.

>>> from jaxneurons.pipeline import run_sharing_analysis
>>> sharing = run_sharing_analysis(lm, task, examples, languages, "runs/demo", SharingConfig(batch_size=8))
"""

from jaxneurons.pipeline.batching import (
    Batch,
    BatchPlan,
    Inputs,
    TokenizedRow,
    bucket_length,
    plan_batches,
    tokenize_examples,
)
from jaxneurons.pipeline.errors import PipelineInputError, ResumeMismatchError
from jaxneurons.analysis.report import FIGURES_DIR, REPORT_FILE
from jaxneurons.pipeline.outputs import EXAMPLES_FILE, FLAGS_FILE, SHARING_FILE
from jaxneurons.pipeline.checks import check_thresholds
from jaxneurons.pipeline.sharing import DEFAULT_THRESHOLDS, SharingConfig, sharing_batches, run_sharing_analysis
from jaxneurons.pipeline.scoring import accuracy_per_language, continuation_scores, judge
from jaxneurons.pipeline.state import STATE_FILE, RunState, load_state

__all__ = [
    "Batch", "BatchPlan", "DEFAULT_THRESHOLDS", "EXAMPLES_FILE", "FIGURES_DIR", "FLAGS_FILE", "Inputs",
    "PipelineInputError", "REPORT_FILE", "ResumeMismatchError", "RunState", "SHARING_FILE", "SharingConfig",
    "STATE_FILE",
    "TokenizedRow", "accuracy_per_language", "bucket_length", "check_thresholds", "continuation_scores",
    "judge", "load_state", "plan_batches", "sharing_batches", "run_sharing_analysis", "tokenize_examples",
]
