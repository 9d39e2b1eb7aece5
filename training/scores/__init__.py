"""Score models (churn, satisfaction, lifetime value) on the scikit-learn estimator contract."""
