"""The decision code that evaluation, batch and online all run: net value, arbitration, control group, contact policy, campaign allocation. Pure, no I/O."""
