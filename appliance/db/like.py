"""LIKE patterns built from user text: its own % and _ are matched literally (ESCAPE '\\')."""


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prefix(text: str) -> str:
    return escape(text) + "%"


def contains(text: str) -> str:
    return "%" + escape(text) + "%"
