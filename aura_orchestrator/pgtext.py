"""Text PostgreSQL can store: no U+0000 (text and JSONB refuse it) and no lone surrogate
(not UTF-8 at all). What a client sends with either is refused at the edge
(api/jsonbody.py); what a provider sends is escaped before it is written (`storable`),
while the client still gets the provider's text intact."""


def is_storable(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def storable(text: str) -> str:
    """`text`, with NUL written as the six characters \\u0000 and each lone surrogate as
    its \\udXXX escape: readable in the admin, and never a failed write."""
    if is_storable(text):
        return text
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
