"""Data generators with known truth. Each returns ``(Dataset, Truth)`` from ``generate(seed, n, n_test, ...)``."""
from hte_bench.data.base import DataError, Dataset, Truth, validate

__all__ = ["DataError", "Dataset", "Truth", "validate"]
