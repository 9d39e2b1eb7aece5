"""Judging a bundle on held-out data: score metrics, policy values, figures and the ROI report."""
