"""The reading half's statistics and documents (no torch): the group table, fairness, the audits of the
explanations, the model card, the report, and the Classroom's rules."""
