"""Customers: who may see which customer, the one rule the CRM pages, the API and Slack share."""
