"""Which neurons matter: static scores, integrated gradients, and their split by sharing category."""

from jaxneurons.attribution.by_category import attribution_statistics, scaled_top_k, top_mask
from jaxneurons.attribution.ig import (PATHS, IGResult, completeness_error, integrated_gradients, quadrature,
                                      replay_plan)
from jaxneurons.attribution.static import static_scores

__all__ = ["IGResult", "integrated_gradients", "PATHS", "completeness_error", "replay_plan", "quadrature",
           "static_scores", "attribution_statistics", "scaled_top_k", "top_mask"]
