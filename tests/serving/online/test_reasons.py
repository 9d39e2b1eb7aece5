"""Reasons read like sentences for an agent: never a raw feature name."""

from __future__ import annotations

from serving.online.reasons import phrase


def test_counts_read_naturally() -> None:
    assert phrase("complaints in the last 30 days", 2.0) == "2 complaints in the last 30 days"
    assert phrase("days since signup date", 412.0) == "412 days since signup date"


def test_other_values_follow_a_colon() -> None:
    assert phrase("share of contacts resolved in the last 90 days", 0.5) == (
        "share of contacts resolved in the last 90 days: 0.5"
    )
    assert phrase("plan", "premium") == "plan: premium"
    assert phrase("monthly fee", 21.5432) == "monthly fee: 21.54"


def test_a_text_topic_reads_as_what_the_customer_wrote_about() -> None:
    from training.features.definition import feature_descriptions

    about = feature_descriptions(["text_topic_1_count_30d"], [["x"], ["bill", "invoice", "refund"]])
    assert phrase(about["text_topic_1_count_30d"], 2.0) == (
        "2 texts about bill, invoice, refund in the last 30 days"
    )
