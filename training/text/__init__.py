"""Text signals: sentiment learned from the customers' own survey answers, and topics found without labels."""
