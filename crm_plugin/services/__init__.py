"""Write-side services of the CRM plugin. Keyword-only, typed, transactional."""
