"""Documents in, documents out: PubTator, BioC (XML, JSON), BRAT and JSONL spans, with exact offsets.

``read_documents`` / ``write_documents`` (``formats``) move documents between files and ``Document``
objects; ``documents_to_sentences`` / ``spans_from_labels`` (``align``) move them to labelled words and
back; ``mention_scores`` (``mention_eval``) scores predicted mentions against gold on the documents.
Importing this package is light: ``bioc`` and ``nervaluate`` load only when used.
"""

from tc.tasks.token_cls.documents.align import (
    AlignedCorpus,
    AlignReport,
    DocSentence,
    documents_to_sentences,
    sentence_spans,
    spans_from_labels,
)
from tc.tasks.token_cls.documents.formats import (
    FORMATS,
    DocumentFormat,
    detect_format,
    find_document_split,
    read_documents,
    register_format,
    write_documents,
)
from tc.tasks.token_cls.documents.mention_eval import mention_scores
from tc.tasks.token_cls.documents.model import Document, Mention, Passage

__all__ = [
    "FORMATS",
    "AlignReport",
    "AlignedCorpus",
    "DocSentence",
    "Document",
    "DocumentFormat",
    "Mention",
    "Passage",
    "detect_format",
    "documents_to_sentences",
    "find_document_split",
    "mention_scores",
    "read_documents",
    "register_format",
    "sentence_spans",
    "spans_from_labels",
    "write_documents",
]
