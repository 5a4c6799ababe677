"""Outbound HTTP to addresses people configure (webhooks), behind an SSRF guard."""
