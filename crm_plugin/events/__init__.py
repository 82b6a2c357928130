"""Shop behaviour coming in: the importer (CSV, JSONL, transaction logs, API batches) is the one way shop data becomes Event rows."""
