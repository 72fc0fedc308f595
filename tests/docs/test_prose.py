"""The docs' prose is whole: no paragraph begins mid-sentence, as one does when an edit cut
the words before it (docs/security.md once read ", on h11, for the kiosk and the captive
portal alike", its subject lost)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))


def paragraphs(text: str) -> list[str]:
    """Paragraphs outside fenced code blocks."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_paragraph_of_a_doc_begins_mid_sentence(doc: Path) -> None:
    cut = [p[:80] for p in paragraphs(doc.read_text()) if p[0] in ",;:)"]
    assert not cut, f"{doc.name}: paragraphs that begin mid-sentence: {cut}"
