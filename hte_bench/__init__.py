"""hte-bench: fit CATE estimators across seeds on data with known truth and log every estimate to MLflow."""
__version__ = "0.1.0"
