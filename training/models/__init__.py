"""Score models: churn, satisfaction and lifetime value (one module each), behind one interface."""
