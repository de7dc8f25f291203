"""Every figure hte-bench draws, in one package: ``base`` (palette, helpers), ``seed`` (one seed's figures),
``analyses`` (subgroups, heatmap, interpreter trees) and ``compare`` (boards and studies). All on Agg
figures of their own (no pyplot state), so they can be drawn in worker processes and saved anywhere.
"""
from hte_bench.plots.analyses import heatmap_figure, interpreter_tree_figure, subgroup_figure
from hte_bench.plots.base import BASELINES, MAX_INTERVALS_SHOWN, detach_figure
from hte_bench.plots.compare import (ate_error_by_config_plot, calibration_overlay_plot, metric_by_config_plot,
                                     study_plot)
from hte_bench.plots.seed import (ate_across_seeds_plot, blp_plot, calibration_plot, importance_plot,
                                  scatter_plot)

__all__ = ["BASELINES", "MAX_INTERVALS_SHOWN", "ate_across_seeds_plot", "ate_error_by_config_plot", "blp_plot",
           "calibration_overlay_plot", "calibration_plot", "detach_figure", "heatmap_figure", "importance_plot",
           "interpreter_tree_figure", "metric_by_config_plot", "scatter_plot", "study_plot", "subgroup_figure"]
