"""The daily job, above both apps: score, then the alert policy, escalations, follow-ups and delivery."""
