"""The CRF head (tc/tasks/token_cls/crf.py) against brute-force enumeration on tiny cases.

The partition function and the Viterbi path are checked against every tag sequence of short rows
(masks of several lengths and with gaps in one batch); decoding never produces a transition the label
scheme forbids even when emissions push for one; the loss is >= 0 and trains; compact/expand are a
lossless round trip between subword and word positions, and the CRF gives the same answers on either.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.tasks.token_cls.crf import CONSTRAINED, LinearChainCRF, allowed_transitions, compact, expand
from tc.tasks.token_cls.labels import IGNORE_INDEX, SEED_LABELS

IOB2 = ("B-A", "B-D", "I-A", "I-D", "O")
IOBES = ("B-A", "E-A", "I-A", "O", "S-A")
LABELS_BY_C: dict[int, Sequence[str]] = {3: ("B", "I", "O"), 4: ("B-A", "I-A", "O", "S-A"), 5: IOB2}
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_crf(labels: Sequence[str] | None, c: int, seed: int) -> LinearChainCRF:
    """A CRF with random (not zero) scores, so transitions matter in every comparison."""
    crf = LinearChainCRF(c) if labels is None else LinearChainCRF.from_labels(labels)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (crf.start, crf.transitions, crf.end):
            p.copy_(torch.randn(p.shape, generator=g))
    return crf


def brute(crf: LinearChainCRF, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[float, list[int], float]:
    """(log partition, best path, best score) of one row by enumerating every tag sequence."""
    with torch.no_grad():
        start, trans, end = crf.scores()
    where = torch.nonzero(mask).flatten().tolist()
    if not where:
        return 0.0, [], 0.0
    c = emissions.shape[-1]
    seqs = torch.tensor(list(itertools.product(range(c), repeat=len(where))))  # (N, L)
    total = start[seqs[:, 0]] + end[seqs[:, -1]] + emissions[where].float()[torch.arange(len(where)), seqs].sum(1)
    total = total + trans[seqs[:, :-1], seqs[:, 1:]].sum(1)
    best = int(total.argmax())
    return float(torch.logsumexp(total, 0)), seqs[best].tolist(), float(total[best])


def batch_masks(t: int) -> torch.Tensor:
    """Rows of every length 0..T left-aligned, plus one with a gap (when T allows)."""
    rows = [[j < n for j in range(t)] for n in range(t + 1)]
    if t >= 3:
        rows.append([j % 2 == 0 for j in range(t)])
    return torch.tensor(rows)


@pytest.mark.parametrize("c", [3, 4, 5])
@pytest.mark.parametrize("t", [1, 2, 3, 4])
@pytest.mark.parametrize("constrained", [False, True])
def test_forward_and_viterbi_equal_brute_force(c: int, t: int, constrained: bool) -> None:
    crf = random_crf(LABELS_BY_C[c] if constrained else None, c, seed=10 * c + t)
    mask = batch_masks(t)
    g = torch.Generator().manual_seed(c * t)
    emissions = torch.randn(len(mask), t, c, generator=g) * 2
    tags = torch.randint(0, c, (len(mask), t), generator=g)
    log_z = crf.log_partition(emissions, mask)
    nll = crf.nll(emissions, tags, mask)
    decoded = crf.decode(emissions, mask, pad=-1)
    for row in range(len(mask)):
        want_z, want_path, want_score = brute(crf, emissions[row], mask[row])
        assert log_z[row].item() == pytest.approx(want_z, abs=1e-4)
        gold = tags[row][mask[row]].tolist()
        gold_score = brute_score(crf, emissions[row], mask[row], gold)
        assert nll[row].item() == pytest.approx(want_z - gold_score, rel=1e-6, abs=1e-3)  # forbidden: ~2e4
        assert decoded[row][mask[row]].tolist() == want_path
        assert (decoded[row][~mask[row]] == -1).all()
        one = crf.score(emissions[row : row + 1], decoded[row : row + 1], mask[row : row + 1])
        assert one.item() == pytest.approx(want_score, abs=1e-3)


def brute_score(crf: LinearChainCRF, emissions: torch.Tensor, mask: torch.Tensor, path: list[int]) -> float:
    """Score of one path over the unmasked positions, written out term by term."""
    if not path:
        return 0.0
    with torch.no_grad():
        start, trans, end = crf.scores()
    where = torch.nonzero(mask).flatten().tolist()
    total = float(start[path[0]]) + float(end[path[-1]])
    total += sum(float(emissions[p, k]) for p, k in zip(where, path, strict=True))
    return total + sum(float(trans[a, b]) for a, b in itertools.pairwise(path))


def test_allowed_transitions_iob2_table() -> None:
    start, trans, end = allowed_transitions(IOB2)
    assert start.tolist() == [True, True, False, False, True]  # no I-X at start
    assert end.all()
    allowed = {(IOB2[i], IOB2[j]) for i in range(5) for j in range(5) if trans[i, j]}
    forbidden = {(a, b) for a in IOB2 for b in IOB2} - allowed
    assert forbidden == {("O", "I-A"), ("O", "I-D"), ("B-A", "I-D"), ("I-A", "I-D"), ("B-D", "I-A"),
                         ("I-D", "I-A")}


def test_allowed_transitions_iobes_and_seed() -> None:
    start, trans, end = allowed_transitions(IOBES)
    ok = {(IOBES[i], IOBES[j]) for i in range(5) for j in range(5) if trans[i, j]}
    assert ok == {("B-A", "I-A"), ("B-A", "E-A"), ("I-A", "I-A"), ("I-A", "E-A")} | {
        (a, b) for a in ("E-A", "O", "S-A") for b in ("B-A", "O", "S-A")}
    assert [IOBES[i] for i in torch.nonzero(start).flatten()] == ["B-A", "O", "S-A"]
    assert [IOBES[i] for i in torch.nonzero(end).flatten()] == ["E-A", "O", "S-A"]

    start, trans, end = allowed_transitions(SEED_LABELS)  # [PAD] B I O X [CLS] [SEP]
    words = [SEED_LABELS.index(x) for x in ("B", "I", "O")]
    special = [i for i in range(len(SEED_LABELS)) if i not in words]
    assert not start[special].any() and not end[special].any()
    assert not trans[special].any() and not trans[:, special].any()
    b, i, o = words
    assert not start[i] and not trans[o, i] and trans[b, i] and trans[i, i] and trans[o, b]


def valid(labels: Sequence[str], path: list[int]) -> bool:
    """The IOB2/IOBES/seed rules re-stated on label strings, independent of allowed_transitions."""
    iobes = any(re.fullmatch(r"[ES](-.+)?", x) for x in labels)
    prev = "O"
    for name in (labels[k] for k in path):
        if name != "O" and not re.fullmatch(r"[BIES](-.+)?", name):
            return False  # a special label on a word
        open_entity = prev[0] in "BI"
        continues = open_entity and prev[2:] == name[2:]
        if name[0] in "IE" and not continues:
            return False
        if iobes and open_entity and name[0] not in "IE":
            return False
        prev = name
    return not (iobes and prev[0] in "BI")


@pytest.mark.parametrize("labels", [IOB2, IOBES, SEED_LABELS], ids=["iob2", "iobes", "seed"])
def test_constrained_transitions_never_decoded(labels: Sequence[str]) -> None:
    c = len(labels)
    crf = random_crf(labels, c, seed=1)
    g = torch.Generator().manual_seed(2)
    argmax_invalid = 0
    for _ in range(30):
        emissions = torch.randn(32, 12, c, generator=g) * 5
        lengths = torch.randint(1, 13, (32,), generator=g)
        mask = torch.arange(12) < lengths[:, None]
        decoded = crf.decode(emissions, mask)
        argmax = emissions.argmax(-1)
        for row in range(32):
            n = int(lengths[row])
            assert valid(labels, decoded[row, :n].tolist()), [labels[k] for k in decoded[row, :n]]
            argmax_invalid += not valid(labels, argmax[row, :n].tolist())
    assert argmax_invalid > 100  # the emissions alone do push for forbidden paths


def test_nll_non_negative_gradient_flows_and_forbidden_entries_get_none() -> None:
    crf = random_crf(IOB2, 5, seed=3)
    g = torch.Generator().manual_seed(4)
    emissions = torch.randn(8, 6, 5, generator=g).requires_grad_()
    mask = torch.arange(6) < torch.tensor([6, 5, 4, 3, 2, 1, 1, 0])[:, None]
    tags = torch.randint(0, 5, (8, 6), generator=g)  # includes forbidden gold paths: nll is large, still finite
    nll = crf.nll(emissions, tags, mask)
    assert nll.dtype == torch.float32 and torch.isfinite(nll).all()
    assert (nll >= -1e-4).all() and nll[-1] == 0  # the empty row costs nothing
    nll.sum().backward()
    assert emissions.grad is not None and emissions.grad[mask].abs().sum() > 0
    assert (emissions.grad[~mask] == 0).all()  # masked positions are absent from the chain
    assert crf.transitions.grad is not None and crf.start.grad is not None
    assert (crf.transitions.grad[~crf.transition_mask] == 0).all()
    assert (crf.start.grad[~crf.start_mask] == 0).all()
    assert crf.transitions.grad[crf.transition_mask].abs().sum() > 0


def test_partition_gradient_is_marginals() -> None:
    """d log Z / d emissions are the per-position tag marginals: they sum to 1 where the mask is on."""
    crf = random_crf(IOBES, 5, seed=5)
    emissions = torch.randn(4, 7, 5, generator=torch.Generator().manual_seed(6)).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 0, 0], [0] * 7]).bool()
    crf.log_partition(emissions, mask).sum().backward()
    assert emissions.grad is not None
    sums = emissions.grad.sum(-1)  # (B, T)
    assert torch.allclose(sums[mask], torch.ones(int(mask.sum())), atol=1e-5)
    assert (sums[~mask] == 0).all()
    assert (emissions.grad >= -1e-7).all()


def test_fp32_whatever_the_input_dtype() -> None:
    crf = random_crf(IOB2, 5, seed=7).to(torch.bfloat16)
    assert crf.transition_mask.dtype == torch.bool  # the constraint survives a bf16 cast
    emissions = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16)
    mask = torch.ones(3, 5, dtype=torch.bool)
    tags = torch.zeros(3, 5, dtype=torch.long)
    nll = crf.nll(emissions, tags, mask)
    assert nll.dtype == torch.float32
    reference = crf.float()
    assert torch.equal(nll, reference.nll(emissions.float(), tags, mask))
    assert torch.equal(crf.decode(emissions, mask), reference.decode(emissions.float(), mask))


def test_empty_inputs() -> None:
    crf = LinearChainCRF.from_labels(IOB2)
    emissions = torch.zeros(2, 0, 5)
    mask = torch.zeros(2, 0, dtype=torch.bool)
    assert crf.decode(emissions, mask).shape == (2, 0)
    assert crf.nll(emissions, torch.zeros(2, 0, dtype=torch.long), mask).tolist() == [0.0, 0.0]
    words, word_mask = compact(emissions, mask)
    assert words.shape == (2, 0, 5) and word_mask.shape == (2, 0)
    assert expand(torch.zeros(2, 0, dtype=torch.long), word_mask, mask).tolist() == [[], []]


def test_crf_learns_a_tiny_tagging() -> None:
    """A linear emission layer plus the CRF fits four sentences: the loss falls and decoding recovers gold."""
    torch.manual_seed(0)
    crf = LinearChainCRF.from_labels(IOB2)
    features = torch.randn(4, 6, 8)
    linear = torch.nn.Linear(8, 5)
    gold = torch.tensor([[4, 0, 2, 4, 1, 3], [0, 2, 2, 4, 4, 4], [1, 3, 4, 0, 4, 4], [4, 4, 4, 4, 1, 4]])
    mask = torch.arange(6) < torch.tensor([6, 4, 5, 6])[:, None]
    optimizer = torch.optim.Adam([*crf.parameters(), *linear.parameters()], lr=0.1)
    first = None
    for _ in range(60):
        loss = crf.nll(linear(features), gold, mask).mean()
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 10
    assert torch.equal(crf.decode(linear(features), mask)[mask], gold[mask])


def test_constrained_value_is_used_for_forbidden_entries() -> None:
    crf = LinearChainCRF.from_labels(IOB2)
    start, trans, _ = crf.scores()
    assert (start[~crf.start_mask] == CONSTRAINED).all() and (trans[~crf.transition_mask] == CONSTRAINED).all()
    assert set(crf.state_dict()) == {"start", "transitions", "end", "start_mask", "transition_mask", "end_mask"}


@st.composite
def subword_batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) bool word masks (first pieces) with gaps anywhere, and a seed for values."""
    b = draw(st.integers(1, 5))
    t = draw(st.integers(1, 9))
    bits = draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))
    return torch.tensor(bits).view(b, t), torch.tensor(draw(st.integers(0, 2**31 - 1)))


@PROPERTY
@given(subword_batches())
def test_compact_expand_round_trip(case: tuple[torch.Tensor, torch.Tensor]) -> None:
    words, seed = case
    b, t = words.shape
    g = torch.Generator().manual_seed(int(seed))
    labels = torch.where(words, torch.randint(0, 5, (b, t), generator=g), IGNORE_INDEX)
    emissions = torch.randn(b, t, 5, generator=g)
    for positions in (words, labels):  # a bool mask and the -100 labels mean the same
        word_em, word_mask = compact(emissions, positions)
        word_tags, same_mask = compact(labels, positions)
        assert torch.equal(word_mask, same_mask)
        assert word_mask.shape[1] == int(words.sum(1).max())
        for row in range(b):
            assert torch.equal(word_em[row][word_mask[row]], emissions[row][words[row]])
            assert torch.equal(word_tags[row][word_mask[row]], labels[row][words[row]])
        assert torch.equal(expand(word_tags, word_mask, positions), labels)
        fill = emissions.argmax(-1)
        assert torch.equal(expand(word_tags, word_mask, positions, fill=fill), torch.where(words, labels, fill))
    wide, wide_mask = compact(emissions, words, width=t)
    assert wide.shape == (b, t, 5) and torch.equal(wide_mask.sum(1), words.sum(1))


@PROPERTY
@given(subword_batches())
def test_crf_on_words_equals_crf_on_subwords(case: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Masked positions are skipped, so the chain over compacted words and over subwords agree."""
    words, seed = case
    b, t = words.shape
    crf = random_crf(IOB2, 5, seed=int(seed) % 1000)
    g = torch.Generator().manual_seed(int(seed))
    emissions = torch.randn(b, t, 5, generator=g).requires_grad_()
    labels = torch.where(words, torch.randint(0, 5, (b, t), generator=g), IGNORE_INDEX)
    word_em, word_mask = compact(emissions, labels)
    word_tags, _ = compact(labels, labels)
    on_words = crf.nll(word_em, word_tags, word_mask)
    assert torch.allclose(on_words, crf.nll(emissions, labels, words), atol=1e-4)
    decoded = expand(crf.decode(word_em, word_mask), word_mask, labels)
    assert torch.equal(decoded, torch.where(words, crf.decode(emissions, words), IGNORE_INDEX))
    if words.any():  # with no word at all the loss does not depend on the emissions
        on_words.sum().backward()
        assert emissions.grad is not None and (emissions.grad[~words] == 0).all()
