"""``cdr_relations``: document-level chemical-induced disease (CID) relations on the CDR corpus.

A second task through the same plugins as ``token_cls``: documents with their Chemical and Disease
mentions and concept ids (PubTator or BioC, read by the token task's document formats) become one row
per document (WordPiece with ``*`` markers around every mention, ATLOP's recipe); the model pools each
concept's mentions and classifies every (chemical, disease) concept pair; evaluation is the BioCreative V
CDR measure, precision / recall / F1 over ``(document, chemical, disease)`` triples.
"""
