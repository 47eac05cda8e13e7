"""``tc predict`` over a corpus: streaming, progress, resuming an interrupted run, sharding over ranks.

* ``documents``: document formats (PubTator, BioC, BRAT, JSONL spans) in and out, streamed or whole
* ``readers``: lazy input readers (raw text lines, JSONL, CoNLL blocks) that count bytes consumed
* ``tagging``: one chunk of units in, its exact output text out (the same for every way of writing)
* ``progress``: rate-limited stderr lines with a percentage and an ETA
* ``resume``: the append-only ``OUT.partial/`` folder, what a run is, and the refusals of a rerun
* ``shard``: ranks from the deepspeed backend's launcher, and rank 0's wait for the other shards
* ``run``: the command itself, from checks to the final rename
"""
