"""The anchors GitHub gives the headings of a Markdown file, for tests that check links into docs/."""
import re


def github_anchors(markdown):
    """Lower case, punctuation other than - and _ dropped, spaces as -."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors
