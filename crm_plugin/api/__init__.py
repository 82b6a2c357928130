"""The REST API (DRF): thin views over the concepts' services and selectors; every endpoint needs authentication."""
