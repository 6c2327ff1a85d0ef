"""Query embeddings through onnxruntime.

A query is one short text, and for one ~20-token forward pass sentence-transformers and
torch spend more time in per-call overhead than in the model (MiniLM: ~20 ms per query
on these cores, ~8 ms through onnxruntime, same vectors to 1e-6). So the first query
exports the loaded sentence-transformers model to ONNX once per machine and model
(`RAGLINE_CACHE_DIR`, default ~/.cache/ragline), checks the export against torch, and
later processes embed queries without importing torch at all. Documents stay on torch,
where batches amortise the overhead. Models this cannot reproduce exactly (other pooling,
extra dense layers) keep the torch path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

EXPORT_FORMAT = 1  # bump when the exported graph or its sidecar changes
PROBES = ("what is the capital of France?", "Ångström-scale CRISPR–Cas9 off-target effects " * 60)
TOLERANCE = 1e-4


class NotExportable(Exception):
    """The model's pipeline is not one the ONNX path reproduces exactly."""


def cache_dir() -> Path:
    explicit = os.environ.get("RAGLINE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragline"


def _hub_snapshot(name: str) -> Path | None:
    """The locally cached snapshot a hub model name resolves to (offline), if any."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not a hub name, not cached, or no huggingface_hub: key by the name alone
        return None


def export_key(source: str) -> str:
    """Names the export of one model: its source, the files' sizes and times in its folder
    (a local path, or the cached snapshot a hub name resolves to: a re-saved or updated
    model gets a new export), and the export format."""
    parts = [source, str(EXPORT_FORMAT)]
    folder = Path(source) if Path(source).is_dir() else _hub_snapshot(source)
    if folder is not None:
        parts.append(str(folder))
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = file.stat()
            parts.append(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


class OnnxQueryEncoder:
    """One text in, one vector out: tokenizer.json + model.onnx + pooling from a sidecar
    (`spec.json`, or `spec` for a model folder that ships without one)."""

    def __init__(self, folder: Path, spec: dict | None = None, *, threads: int = 1):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        spec = spec or json.loads((folder / "spec.json").read_text())
        if spec.get("format") != EXPORT_FORMAT:
            raise ValueError(f"{folder}: export format {spec.get('format')}, expected {EXPORT_FORMAT}")
        self.pooling, self.normalize, self.prefix = spec["pooling"], spec["normalize"], spec["prefix"]
        self.input_names = spec["inputs"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(spec["max_length"])
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # default 1: for one short sequence more threads only wait
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def encode(self, text: str) -> list[float]:
        encoding = self.tokenizer.encode(self.prefix + text)
        columns = {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask,
                   "token_type_ids": encoding.type_ids}
        feeds = {name: np.asarray([columns[name]], dtype=np.int64) for name in self.input_names}
        tokens = self.session.run(None, feeds)[0][0]
        vector = tokens[0] if self.pooling == "cls" else tokens.mean(axis=0)
        if self.normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector.astype(np.float32).tolist()


def _spec_of(model) -> dict:
    """What the ONNX path must reproduce, or NotExportable: Transformer -> Pooling
    (mean or CLS) -> optional Normalize, and a default prompt only as a plain prefix."""
    names = [type(module).__name__ for module in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise NotExportable(f"modules {names}")
    pooling = model[1].get_config_dict()
    mode = pooling.get("pooling_mode")
    if mode is None:  # sentence-transformers < 5: one boolean per mode
        flags = [key for key, on in pooling.items() if key.startswith("pooling_mode_") and on]
        legacy = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
        mode = legacy.get(flags[0]) if len(flags) == 1 else None
    if mode not in ("mean", "cls"):
        raise NotExportable(f"pooling {pooling}")
    prompt_name = getattr(model, "default_prompt_name", None)
    prefix = (getattr(model, "prompts", {}) or {}).get(prompt_name, "") if prompt_name else ""
    if prefix and not pooling.get("include_prompt", True):
        raise NotExportable("a default prompt excluded from pooling")
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise NotExportable("no fast tokenizer")
    return {"format": EXPORT_FORMAT, "pooling": mode, "normalize": names[-1] == "Normalize", "prefix": prefix,
            "max_length": int(model.max_seq_length), "inputs": list(model.tokenizer.model_input_names)}


def export(model, folder: Path) -> OnnxQueryEncoder:
    """Export `model` (a loaded SentenceTransformer) into `folder`, check the result against
    torch on probe texts, then publish the folder atomically."""
    import torch

    spec = _spec_of(model)
    transformer = model[0].auto_model.eval()
    inputs = spec["inputs"]

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors):
            return self.transformer(**dict(zip(inputs, tensors))).last_hidden_state

    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
    staging.mkdir(parents=True)
    try:
        sample = model.tokenizer(["a query"], return_tensors="pt")
        axes = {name: {0: "batch", 1: "tokens"} for name in [*inputs, "last_hidden_state"]}
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about control flow fixed at export time
            torch.onnx.export(LastHiddenState(), tuple(sample[name] for name in inputs), str(staging / "model.onnx"),
                              input_names=inputs, output_names=["last_hidden_state"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        model.tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        (staging / "spec.json").write_text(json.dumps(spec))
        encoder = OnnxQueryEncoder(staging)
        expected = model.encode(list(PROBES), normalize_embeddings=False, convert_to_numpy=True, show_progress_bar=False)
        for text, want in zip(PROBES, expected, strict=True):
            difference = float(np.abs(np.asarray(encoder.encode(text)) - want).max())
            if difference > TOLERANCE:
                raise NotExportable(f"ONNX output differs from torch by {difference:.2g}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(folder)
        except OSError:  # another process published the same export first
            pass
        return encoder
    finally:
        shutil.rmtree(staging, ignore_errors=True)
