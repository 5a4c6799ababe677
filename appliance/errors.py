"""Errors the appliance reports to operators as one clear line."""

EX_CONFIG = 78  # sysexits.h: configuration error; systemd's RestartPreventExitStatus=78


class ConfigError(Exception):
    """A configuration or key problem. The CLI prints the message and exits 78."""

    def __init__(self, *problems: str):
        self.problems = [p for p in problems if p]
        super().__init__("; ".join(self.problems))
