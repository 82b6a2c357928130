"""The CRM pages: views, forms, charts and the worklist query."""
