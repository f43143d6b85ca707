"""Java-style exceptions whose ``toString()`` text the error document must reproduce."""

from __future__ import annotations


class TwinError(Exception):
    """A failure the original converter turned into the fallback document.

    ``java_text`` is the text Java's ``Throwable.toString()`` would give.
    """

    def __init__(self, java_class: str, message: str | None = None, nested: TwinError | None = None):
        self.java_class = java_class
        self.message = message
        self.nested = nested
        super().__init__(self.java_text)

    @property
    def java_text(self) -> str:
        text = self.java_class if self.message is None else f"{self.java_class}: {self.message}"
        if self.nested is not None:
            text += ";\n  nested exception is:\n\t" + self.nested.java_text
        return text


def io_error(message: str | None) -> TwinError:
    return TwinError("java.io.IOException", message)


def unsupported_encoding(name: str) -> TwinError:
    return TwinError("java.io.UnsupportedEncodingException", name)


def messaging(message: str | None, nested: TwinError | None = None) -> TwinError:
    return TwinError("javax.mail.MessagingException", message, nested)


def parse_error(message: str | None = None) -> TwinError:
    return TwinError("javax.mail.internet.ParseException", message)
