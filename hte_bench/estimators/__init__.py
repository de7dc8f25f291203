"""Estimator adapters: econml, statsmodels and baseline CATE estimators behind one small interface."""
from hte_bench.estimators.base import CateAdapter, Estimate, NoInference

__all__ = ["CateAdapter", "Estimate", "NoInference"]
