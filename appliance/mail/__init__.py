"""Mail protocol adapters: SMTP and IMAP clients that enforce our transport rules.

Services talk to mail servers only through these small adapters, so the rules (TLS 1.2+,
certificate verification, STARTTLS required, never a password in clear) live in one place.
"""
