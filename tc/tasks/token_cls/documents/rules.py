"""Document-level decisions on predicted mentions: abbreviations and consistency within one document.

The model tags sentence by sentence; an abstract defines "indomethacin (IDM)" once and then writes
"IDM", which the model, seeing one sentence, may miss or type as the other class. These rules revise
a document's predicted mentions with what the whole document says (the systems shipped with the CDR
corpus, tmChem and DNorm, resolve abbreviations document-wide before deciding too):

* ``abbreviation`` (a): where a definition's long form is a predicted mention (one ending where the
  long form ends: "renal crisis" of "scleroderma renal crisis (SRC)" counts), every whole-token
  occurrence of its short form in the document takes that mention's type: retyped where the model
  typed it otherwise, tagged where the model found nothing there. An occurrence partly covered by
  another mention is left as it is, and a short form whose long form is not an entity is not forced.
* ``no_long_form`` (d): where nothing the model tagged touches the long form, the short form is no
  entity either: the model's mentions exactly on its occurrences are dropped (in CDR's gold, a short
  form whose long form is not annotated is itself annotated 7 times in 781, devel).
* ``long_form`` (b): where the long form is not a mention but its short form is (the majority type of
  its exact occurrences), the long form is tagged with that type, replacing mentions inside it; a
  mention crossing its edge leaves it alone. With ``abbreviation`` on, that type then reaches every
  occurrence of the short form as in (a). With ``no_long_form`` on too, (d) decides first.
* ``consistency`` (c): a string predicted as a mention somewhere in the document is a mention of its
  majority type wherever else it stands as a whole token and nothing overlaps it.

Definitions come from ``abbreviations.find_abbreviations`` (Schwartz & Hearst), sentence by sentence;
the first definition of a short form in a document is the one used. A mention a rule made or changed
says so in ``Mention.rule``; its score is the score of the mention it came from. With no rule, or when
no rule changes anything, the document comes back as it was (same mentions, same order).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Sequence

from tc.tasks.token_cls.documents.abbreviations import Abbreviation, find_abbreviations, occurrences
from tc.tasks.token_cls.documents.model import Document, Mention, with_mentions

__all__ = ["RULES", "apply_rules", "check_rules", "rules_flag"]

RULES = ("abbreviation", "no_long_form", "long_form", "consistency")
"""Every document rule, in the order they apply."""

Span = tuple[int, int]


def check_rules(rules: Collection[str], where: str) -> tuple[str, ...]:
    """``rules`` in canonical order; an unknown name is a ValueError naming ``where`` (the key or flag)."""
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"{where}: unknown document rule {unknown[0]!r} (valid: {', '.join(RULES)}, or none)")
    return tuple(r for r in RULES if r in rules)


def rules_flag(value: str | None, flag: str = "--document-rules") -> tuple[str, ...] | None:
    """``--document-rules`` as typed: ``none``, or rule names joined by commas (None: not given); an
    unknown name is a TcError naming the flag."""
    from tc.core.errors import TcError

    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if names in ([], ["none"]):
        return ()
    try:
        return check_rules(names, f"{flag} {value}")
    except ValueError as exc:
        raise TcError(str(exc)) from None


def apply_rules(doc: Document, rules: Collection[str], sentences: Sequence[Span] | None = None) -> Document:
    """``doc`` with its (predicted) mentions revised by ``rules``; ``sentences``: where definitions are
    looked for (None: the documents package's sentence spans of ``doc``)."""
    if not rules or not doc.mentions:
        return doc
    mentions = list(doc.mentions)
    if "abbreviation" in rules or "long_form" in rules or "no_long_form" in rules:
        if sentences is None:
            from tc.tasks.token_cls.documents.align import sentence_spans

            sentences = sentence_spans(doc)
        seen: set[str] = set()
        for pair in find_abbreviations(doc.text, sentences):
            if pair.short not in seen:
                seen.add(pair.short)
                mentions = _abbreviation(doc.text, pair, mentions, rules)
    if "consistency" in rules:
        mentions = _consistency(doc.text, mentions)
    if mentions == doc.mentions:
        return doc
    return with_mentions(doc, sorted(mentions, key=lambda m: (m.start, m.end, m.type)))


def _overlaps(m: Mention, start: int, end: int) -> bool:
    return m.start < end and start < m.end


def _changed(m: Mention, type: str, rule: str) -> Mention:
    return m if m.type == type else dataclasses.replace(m, type=type, rule=rule)


def _spread(text: str, spans: Sequence[Span], mentions: list[Mention], type: str, score: float | None,
            rule: str) -> list[Mention]:
    """``type`` on every span of ``spans``: a mention exactly there is retyped, an empty span tagged, a
    span partly covered left alone."""
    for start, end in spans:
        over = [m for m in mentions if _overlaps(m, start, end)]
        if not over:
            mentions.append(Mention(start, end, type, text[start:end], score=score, rule=rule))
        elif all((m.start, m.end) == (start, end) for m in over):
            kept = [m for m in mentions if m not in over]
            retyped = [_changed(m, type, rule) for m in over]
            mentions = kept + [m for i, m in enumerate(retyped) if m.span not in {r.span for r in retyped[:i]}]
    return mentions


def _abbreviation(text: str, pair: Abbreviation, mentions: list[Mention], rules: Collection[str]) -> list[Mention]:
    short_spans = list(occurrences(text, pair.short))
    at_long = [m for m in mentions if m.end == pair.long_end]
    exact = [m for m in mentions if (m.start, m.end) in set(short_spans)]
    if at_long:
        source = max(at_long, key=lambda m: m.end - m.start)
        type, score = source.type, source.score
    elif "no_long_form" in rules and not any(_overlaps(m, pair.long_start, pair.long_end) for m in mentions):
        return [m for m in mentions if m not in exact]
    elif "long_form" in rules:
        if not exact:
            return mentions
        type = Counter(m.type for m in exact).most_common(1)[0][0]
        score = max((m.score for m in exact if m.type == type and m.score is not None), default=None)
        start, end = pair.long_start, pair.long_end
        if any(_overlaps(m, start, end) and not (start <= m.start and m.end <= end) for m in mentions):
            return mentions
        mentions = [m for m in mentions if not _overlaps(m, start, end)]
        mentions.append(Mention(start, end, type, text[start:end], score=score, rule="long_form"))
    else:
        return mentions
    if "abbreviation" not in rules:
        return mentions
    return _spread(text, short_spans, mentions, type, score, "abbreviation")


def _consistency(text: str, mentions: list[Mention]) -> list[Mention]:
    by_string: dict[str, Counter[str]] = {}
    scores: dict[tuple[str, str], float | None] = {}
    for m in mentions:
        string = text[m.start : m.end]
        if len(string) < 2 or not any(c.isalpha() for c in string):
            continue
        by_string.setdefault(string, Counter())[m.type] += 1
        if m.score is not None:
            scores[string, m.type] = max(scores.get((string, m.type)) or 0.0, m.score)
    for string, types in by_string.items():
        type = types.most_common(1)[0][0]
        mentions = _spread(text, list(occurrences(text, string)), mentions, type, scores.get((string, type)),
                           "consistency")
    return mentions
