"""What a person sees while a job runs, as an interface: the command line implements it with Rich
(``cli/predict.RichUI``); a program gets ``LoggingUI`` (the logger ``xception_cli``) unless it
passes ``QuietUI`` or its own. No Click or Rich here."""

from __future__ import annotations

from typing import IO, Protocol

from .errors import XceptionError
from .logs import logger
from .pipeline import Record


class ProgressHandle(Protocol):
    def advance(self, n: int, failed: int) -> None: ...

    def close(self) -> None: ...


class UI(Protocol):
    """What a person sees while a job runs (stderr on the command line)."""

    def warn(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...

    def download(self, done: int, total: int | None) -> None: ...

    def progress(self, total: int, label: str = "classifying") -> ProgressHandle | None: ...

    def table(self, records: list[Record], stream: IO[str]) -> None: ...


class NoProgress:
    def advance(self, n, failed):
        pass

    def close(self):
        pass


class QuietUI:
    """A UI that shows nothing (warnings are still kept in ``self.warnings``)."""

    def __init__(self):
        self.warnings: list[str] = []

    def warn(self, message):
        self.warnings.append(message)

    def info(self, message):
        pass

    def download(self, done, total):
        pass

    def progress(self, total, label="classifying"):
        return None

    def table(self, records, stream):
        raise XceptionError("the table format needs a UI that can draw tables")


class LoggingUI(QuietUI):
    """A program's UI: warnings to ``logging`` (logger ``xception_cli``, level WARNING), notes
    such as the closing line at INFO; both also kept (``self.warnings``, ``self.notes``)."""

    def __init__(self):
        super().__init__()
        self.notes: list[str] = []
        self._announced = False

    def warn(self, message):
        super().warn(message)
        logger.warning("%s", message)

    def info(self, message):
        self.notes.append(message)
        logger.info("%s", message)

    def download(self, done, total):
        if not self._announced:
            self._announced = True
            logger.info("downloading the ImageNet weights into the Keras cache (once)")
