"""Continuous batching for causal language models on torch (transformers models).

One decoding thread per loaded version runs the loop: admit waiting sequences (their prompts prefilled
together in one left-padded pass, each into a KV-cache row of its own), then one decode step for every
running sequence together, then hand each sequence its new text. A sequence joins the running batch at
the next step after its prefill and leaves it as soon as it is done, cancelled or timed out; the others
never wait for it.

The running batch keeps each sequence's keys and values as one row of a left-padded cache: a joining
sequence's cache is padded to the batch's length and stacked under it; a leaving one's row is dropped
and the padding no row needs any more is cut. Each row attends only to its own tokens (attention mask)
at its own positions (explicit position ids), so batching changes no answer beyond floating-point noise.

Why not transformers' own continuous-batching manager: it takes one generation config for all requests
(greedy or sampled, one seed, drawn from the process-wide RNG), so per-request ``temperature``,
``seed`` ("same seed, same answer") and greedy requests beside sampled ones cannot be honoured; and it
has no stop strings. Sampling here uses one ``torch.Generator`` per sequence.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from modelport.errors import (
    InferenceFailed,
    InvalidInput,
    ModelportError,
    NotReady,
    Overloaded,
    RequestTimeout,
)
from modelport.runtimes.base import Tensors, text_array, texts_of
from modelport.runtimes.streams import LENGTH, STOP, Delta, Sampling, TextTail, TokenStream

if TYPE_CHECKING:
    import torch

    from modelport.serving.batcher import BatchPolicy

log = logging.getLogger("modelport.decoding")


@dataclass(frozen=True)
class DecodingLimits:
    max_sequences: int  # decoded together; more wait
    max_waiting: int  # sequences waiting for a slot; beyond, 503 + Retry-After
    max_waiting_tokens: int  # prompt tokens waiting for a slot; beyond, 503 + Retry-After
    max_length: int  # the model's positions: prompt and completion together
    default_max_tokens: int  # a request that names no max_tokens


@dataclass
class _Sequence:
    prompt: list[int]
    sampling: Sampling
    max_tokens: int
    stream: TokenStream
    tail: TextTail
    generator: torch.Generator | None
    made: int = 0
    last: int = -1  # the newest token, fed to the model at the next step


class ContinuousBatcher:
    """A ``Scheduler`` (V2 requests: greedy completions of each text) that also ``start``-s token streams."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        encode: Callable[[str], list[int]],
        device: torch.device,
        limits: DecodingLimits,
        eos: set[int],
        report: Callable[[int, int], None] | None = None,
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer  # the decoding thread's own copy, to detokenise
        self._encode = encode  # the runtime's tokenizer (under its lock), for V2 texts
        self._device = device
        self.limits = limits
        self._eos = eos
        self._report = report
        self._merges = _cache_rows_merge(model.config)
        self._vocabulary = int(model.get_input_embeddings().num_embeddings)
        accepted = inspect.signature(model.forward).parameters
        # transformers 5 renamed past_key_values to cache (the old name warns, then goes away)
        self._cache_name = "cache" if "cache" in accepted else "past_key_values"
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []
        self._cache: Any = None  # a transformers DynamicCache, one row per running sequence
        self._mask: torch.Tensor | None = None  # [rows, cached tokens]: 1 for a row's own tokens
        self._lengths: list[int] = []  # tokens each row has in the cache
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="modelport-decoding", daemon=True)
        self._thread.start()

    # ---- the Scheduler seam --------------------------------------------------------------------------
    @property
    def inflight(self) -> int:
        return len(self._waiting) + len(self._running)

    def configure(self, policy: BatchPolicy) -> None:
        self.limits = replace(
            self.limits, max_waiting=policy.max_queue, max_waiting_tokens=policy.max_batch_tokens
        )

    async def submit(
        self, inputs: Tensors, outputs: Sequence[str] | None = None, timeout: float | None = None
    ) -> Tensors:
        """V2 inference: each text's greedy continuation of the version's ``max_new_tokens``, decoded
        beside every other running sequence."""
        texts = texts_of(inputs, "text")
        keep = self.limits.max_length - self.limits.default_max_tokens  # a long prompt keeps its end
        prompts = await asyncio.to_thread(lambda: [self._encode(text)[-keep:] for text in texts])
        streams: list[TokenStream] = []
        try:
            streams.extend(self.start(prompt, Sampling(temperature=0.0)) for prompt in prompts)
            answers = await asyncio.wait_for(asyncio.gather(*(s.text() for s in streams)), timeout)
        except TimeoutError:
            raise RequestTimeout(f"no answer within {timeout:g} s") from None
        finally:
            for stream in streams:
                stream.cancel()
        return {"text": text_array(answers)}

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.inflight:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        for seq in [*self._waiting, *self._running]:
            seq.stream.fail(NotReady("the version was unloaded"))
        self._waiting.clear()
        self._running.clear()
        self._cache = self._mask = None
        self._reported()  # its gauges read 0

    # ---- requests ---------------------------------------------------------------------------------------
    def start(self, prompt: list[int], sampling: Sampling) -> TokenStream:
        """Queue a sequence (on the event loop); its text arrives on the returned stream."""
        limits = self.limits
        if not prompt:
            raise InvalidInput("the prompt has no tokens for this model", field="prompt")
        if min(prompt) < 0 or max(prompt) >= self._vocabulary:
            raise InvalidInput(f"token ids must be from 0 to {self._vocabulary - 1}", field="prompt")
        room = limits.max_length - len(prompt)
        if room < 1:
            raise InvalidInput(
                f"the prompt has {len(prompt)} tokens; this model's maximum context length is "
                f"{limits.max_length} tokens",
                field="prompt",
            )
        wanted = sampling.max_tokens
        if wanted is not None and wanted > room:
            raise InvalidInput(
                f"this model's maximum context length is {limits.max_length} tokens; the prompt has "
                f"{len(prompt)} and max_tokens asks for {wanted} more",
                field="max_tokens",
            )
        stream = TokenStream(asyncio.get_running_loop(), prompt_tokens=len(prompt))
        generator = None
        if not sampling.greedy:
            import torch

            generator = torch.Generator()
            generator.manual_seed(sampling.seed if sampling.seed is not None else random.getrandbits(63))
        seq = _Sequence(
            prompt,
            sampling,
            wanted or min(limits.default_max_tokens, room),
            stream,
            TextTail(self._decode, sampling.stop),
            generator,
        )
        with self._wake:
            if self._closed:
                raise NotReady("the version is being unloaded")
            waiting_tokens = sum(len(s.prompt) for s in self._waiting)
            if len(self._waiting) >= limits.max_waiting or (
                self._waiting and waiting_tokens + len(prompt) > limits.max_waiting_tokens
            ):
                raise Overloaded(
                    f"{len(self._waiting)} sequences ({waiting_tokens} prompt tokens) are waiting for this "
                    "model; retry shortly"
                )
            self._waiting.append(seq)
            stream.on_cancel(self._poke)
            self._wake.notify()
        self._reported()
        return stream

    def _poke(self) -> None:
        with self._wake:
            self._wake.notify()

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=True))

    def _reported(self) -> None:
        if self._report is not None:
            self._report(len(self._running), len(self._waiting))

    # ---- the decoding thread ------------------------------------------------------------------------------
    def _loop(self) -> None:
        import torch

        from modelport.runtimes.torchkit import batch_memory_as_overload

        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self._running:
                    self._wake.wait()
                if self._closed:
                    return
            admitted: list[_Sequence] = []
            try:
                with torch.inference_mode(), batch_memory_as_overload(self._device):
                    # cancelled rows leave first, so that their slots go to waiting sequences at once
                    self._drop([i for i, s in enumerate(self._running) if s.stream.cancelled])
                    admitted = self._admit()
                    self._prefill(admitted)
                    admitted = []
                    if self._running:
                        self._step()
            except Exception as exc:  # the batch fails together, with what it was admitting; the loop goes on
                self._fail([*self._running, *admitted], exc)
                self._running, self._lengths, self._cache, self._mask = [], [], None, None
            self._reported()

    def _admit(self) -> list[_Sequence]:
        """Waiting sequences that get a slot now: as many as there are free slots and as can be
        prefilled together within the token budget (their padded prompts)."""
        with self._wake:
            for seq in [s for s in self._waiting if s.stream.cancelled]:
                self._waiting.remove(seq)
            capacity = self.limits.max_sequences if self._merges else 1
            admitted: list[_Sequence] = []
            longest = 0
            while self._waiting and len(self._running) + len(admitted) < capacity:
                longest = max(longest, len(self._waiting[0].prompt))
                if admitted and longest * (len(admitted) + 1) > self.limits.max_waiting_tokens:
                    break
                admitted.append(self._waiting.popleft())
            return admitted

    @staticmethod
    def _fail(seqs: Sequence[_Sequence], exc: Exception) -> None:
        if not isinstance(exc, ModelportError):
            log.error("decoding failed", exc_info=exc)
            exc = InferenceFailed(f"generation failed: {type(exc).__name__}")
        for seq in seqs:
            seq.stream.fail(exc)

    def _prefill(self, admitted: list[_Sequence]) -> None:
        """The prompts of sequences admitted together, in one forward pass (left-padded, masked), each
        into a cache row of its own; those not done at their first token join the running batch."""
        import torch
        from transformers import DynamicCache

        seqs = [s for s in admitted if not s.stream.cancelled]
        if not seqs:
            return
        width = max(len(s.prompt) for s in seqs)
        pads = [width - len(s.prompt) for s in seqs]
        ids = [[0] * pad + s.prompt for s, pad in zip(seqs, pads, strict=True)]
        mask = [[0] * pad + [1] * len(s.prompt) for s, pad in zip(seqs, pads, strict=True)]
        positions = [[0] * pad + list(range(len(s.prompt))) for s, pad in zip(seqs, pads, strict=True)]
        out = self._model(
            input_ids=torch.tensor(ids, dtype=torch.long, device=self._device),
            attention_mask=torch.tensor(mask, dtype=torch.long, device=self._device),
            position_ids=torch.tensor(positions, dtype=torch.long, device=self._device),
            use_cache=True,
            **{self._cache_name: DynamicCache(config=self._model.config)},
            **self._last_logits,
        )
        tokens = self._pick(out.logits[:, -1, :], seqs)
        going = [
            i for i, (seq, token) in enumerate(zip(seqs, tokens, strict=True)) if not self._emit(seq, token)
        ]
        if not going:
            return
        if not self._merges:  # one sequence at a time: its cache stays as the model made it
            self._cache, self._mask = out[self._cache_name], torch.tensor(mask, device=self._device)
            self._running, self._lengths = [seqs[0]], [len(seqs[0].prompt)]
            return
        index = torch.tensor(going, device=self._device)
        rows = [(layer.keys[index], layer.values[index]) for layer in out[self._cache_name].layers]
        self._join([seqs[i] for i in going], rows, torch.tensor(mask, device=self._device)[index])

    def _join(
        self, seqs: list[_Sequence], rows: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor
    ) -> None:
        """Stack prefilled sequences' cache rows under the running batch's, left-padded to one length."""
        import torch
        from transformers import DynamicCache

        lengths = [len(s.prompt) for s in seqs]
        cut = mask.shape[1] - max(lengths)  # padding none of the new rows needs
        rows, mask = [(k[:, :, cut:], v[:, :, cut:]) for k, v in rows], mask[:, cut:]
        if self._cache is not None and self._mask is not None:
            width = max(self._mask.shape[1], mask.shape[1])
            rows = [
                (
                    torch.cat([_pad_left(k, width), _pad_left(nk, width)]),
                    torch.cat([_pad_left(v, width), _pad_left(nv, width)]),
                )
                for (k, v), (nk, nv) in zip(self._layers(), rows, strict=True)
            ]
            mask = torch.cat([_pad_left(self._mask, width), _pad_left(mask, width)])
        self._cache, self._mask = DynamicCache(ddp_cache_data=rows), mask
        self._running.extend(seqs)
        self._lengths.extend(lengths)

    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.keys, layer.values) for layer in self._cache.layers]

    def _step(self) -> None:
        """One token for every running sequence."""
        import torch

        assert self._mask is not None
        rows = len(self._running)
        ones = torch.ones((rows, 1), dtype=torch.long, device=self._device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        out = self._model(
            input_ids=torch.tensor([[s.last] for s in self._running], dtype=torch.long, device=self._device),
            attention_mask=self._mask,
            position_ids=torch.tensor([[n] for n in self._lengths], dtype=torch.long, device=self._device),
            use_cache=True,
            **{self._cache_name: self._cache},
        )
        self._cache = out[self._cache_name]
        self._lengths = [n + 1 for n in self._lengths]
        tokens = self._pick(out.logits[:, -1, :], self._running)
        done = [
            i
            for i, (seq, token) in enumerate(zip(self._running, tokens, strict=True))
            if self._emit(seq, token)
        ]
        self._drop(done)

    def _drop(self, rows: list[int]) -> None:
        """Take finished or cancelled rows out of the batch, and the padding no row needs any more."""
        if not rows:
            return
        import torch
        from transformers import DynamicCache

        keep = [i for i in range(len(self._running)) if i not in set(rows)]
        self._running = [self._running[i] for i in keep]
        self._lengths = [self._lengths[i] for i in keep]
        if not keep or self._mask is None:
            self._running, self._lengths, self._cache, self._mask = [], [], None, None
            return
        index = torch.tensor(keep, device=self._device)
        cut = self._mask.shape[1] - max(self._lengths)
        self._mask = self._mask.index_select(0, index)[:, cut:]
        self._cache = DynamicCache(
            ddp_cache_data=[
                (k.index_select(0, index)[:, :, cut:], v.index_select(0, index)[:, :, cut:])
                for k, v in self._layers()
            ]
        )

    def _pick(self, logits: torch.Tensor, seqs: Sequence[_Sequence]) -> list[int]:
        """The next token of each row: the most likely one, or a draw from the sequence's own generator."""
        import torch

        logits = logits.float()
        tokens: list[int] = logits.argmax(dim=-1).tolist()
        for i, seq in enumerate(seqs):
            if seq.generator is None:
                continue
            row = (logits[i] / seq.sampling.temperature).cpu()
            if seq.sampling.top_p < 1.0:
                ordered, order = row.sort(descending=True)
                cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
                cut = cumulative - ordered.softmax(dim=-1) >= seq.sampling.top_p  # keep the first over top_p
                row[order[cut]] = float("-inf")
            probs = row.softmax(dim=-1)
            if not bool(torch.isfinite(probs).all()):  # logits the temperature overflowed: the likeliest
                continue
            tokens[i] = int(torch.multinomial(probs, 1, generator=seq.generator).item())
        return tokens

    def _emit(self, seq: _Sequence, token: int) -> bool:
        """Hand the sequence its token's text; True when the sequence is done."""
        seq.made += 1
        if seq.stream.cancelled:
            return True
        if token in self._eos and not seq.sampling.ignore_eos:
            seq.stream.put(Delta(seq.tail.flush(), STOP), 1)
            return True
        text, stopped = seq.tail.push(token)
        if stopped:
            seq.stream.put(Delta(text, STOP), 1)
            return True
        if seq.made >= seq.max_tokens:
            seq.stream.put(Delta(text + seq.tail.flush(), LENGTH), 1)
            return True
        seq.stream.put(Delta(text), 1)
        seq.last = token
        return False


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros before the sequence dimension's start (dim -2 of keys and values, dim 1 of a mask)."""
    import torch

    dim = 1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _cache_rows_merge(config: Any) -> bool:
    """Whether rows of this model's cache can be stacked: full attention in every layer (no sliding
    windows, no recurrent state). Other models decode one sequence at a time."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    kinds = getattr(text, "layer_types", None)
    if kinds and any(kind != "full_attention" for kind in kinds):
        return False
    return not getattr(text, "sliding_window", None)
