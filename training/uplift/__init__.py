"""Uplift: meta-learners per action, their selection per outcome, and the off-policy metrics that judge them."""
