"""Provider presets: hosts, ports and security for the common mailbox providers.

`saves_sent` says whether the provider files SMTP-submitted mail into Sent by itself
(Gmail and Microsoft do); where it does not, MailFlow appends a copy over IMAP.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    imap_host: str
    imap_port: int
    imap_security: str
    saves_sent: bool
    help: str = ""


PRESETS: dict[str, Preset] = {p.key: p for p in (
    Preset("gmail", "Gmail / Google Workspace", "smtp.gmail.com", 465, "ssl", "imap.gmail.com", 993, "ssl",
           True, "Turn on 2-Step Verification, then create an App Password (Google Account → Security)."),
    Preset("microsoft365", "Microsoft 365", "smtp.office365.com", 587, "starttls", "outlook.office365.com",
           993, "ssl", True, "SMTP AUTH must be enabled for the mailbox in the Microsoft 365 admin center."),
    Preset("outlook", "Outlook.com / Hotmail", "smtp-mail.outlook.com", 587, "starttls",
           "outlook.office365.com", 993, "ssl", True, "Use an App Password (account security settings)."),
    Preset("yahoo", "Yahoo Mail", "smtp.mail.yahoo.com", 465, "ssl", "imap.mail.yahoo.com", 993, "ssl",
           False, "Generate an App Password under Account Security."),
    Preset("zoho", "Zoho Mail", "smtp.zoho.com", 465, "ssl", "imap.zoho.com", 993, "ssl", False,
           "Enable IMAP access in Zoho Mail settings; use an application-specific password."),
    Preset("zoho_eu", "Zoho Mail (EU)", "smtp.zoho.eu", 465, "ssl", "imap.zoho.eu", 993, "ssl", False,
           "For accounts in Zoho's EU data centre."),
    Preset("fastmail", "Fastmail", "smtp.fastmail.com", 465, "ssl", "imap.fastmail.com", 993, "ssl", False,
           "Create an App Password with IMAP and SMTP access."),
    Preset("icloud", "iCloud Mail", "smtp.mail.me.com", 587, "starttls", "imap.mail.me.com", 993, "ssl",
           True, "Create an app-specific password at appleid.apple.com."),
)}
CUSTOM = "custom"
PROVIDER_KEYS = (*PRESETS, CUSTOM)
