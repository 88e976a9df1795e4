"""Streaming recognition: a stateless :class:`Recognizer` and one :class:`Stream` per audio source.

    recognizer = Recognizer(load_model("demo"))
    stream = recognizer.create_stream()
    stream.accept_waveform(samples, 48000)         # any rate, any block size
    recognizer.step([stream])     # the live loop's round (every caller runs it): one chunk of each ready stream
    print(stream.result.committed, stream.result.tentative)  # in one batch, then the second passes at endpoints

The :class:`Stream` owns everything that changes; the recognizer runs the models and keeps nothing of any stream's.

The encoder runs chunk by chunk (``forward_chunk`` with the explicit :class:`asr.models.state.EncoderState`,
attention cache limited to ``left_chunks`` chunks), partial text comes from CTC prefix beam search
advanced chunk by chunk, and endpoints are detected on CTC blanks (rules in the spirit of WeNet and
sherpa-onnx). At an endpoint a second pass over the segment's encoder output gives the final text with word
timestamps: any decoding method, run by :func:`asr.search.methods.search` with the stream's
:class:`DecodeOptions` (LM and hotwords included), exactly as offline decoding runs it. Memory is bounded: the encoder cache by
``left_chunks``, the segment by the maximum utterance length rule.
"""

from __future__ import annotations

import collections
import functools
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import soxr
import torch

from asr import config
from asr.audio import SAMPLE_RATE, as_samples
from asr.config import ENDPOINT_IDLE_SECONDS, ENDPOINT_MAX_SEGMENT_SECONDS, ENDPOINT_PAUSE_SECONDS, STREAMING_MODEL
from asr.errors import UserError
from asr.features import streaming_features
from asr.inference.commits import Committer, EndedSegment, PendingCommit, final_model_passes, own_passes, punctuated
from asr.inference.model_dir import LoadedModel, load_model, resolve_model_path
from asr.inference.vad import StreamGate, decide
from asr.models.punctuator import Punctuator
from asr.models.state import EncoderState, batch_states, row_state
from asr.results import Captions, Segment
from asr.search.align import encoder_frame_seconds
from asr.search.ctc import PrefixBeam
from asr.search.mask_ctc import mask_ctc
from asr.search.methods import METHODS, available_methods, ctc_companion, default_method, word_fusion_factory
from asr.search.options import DEFAULTS, DecodeOptions, decode_options
from asr.text import BLANK_ID

BLOCK_SECONDS = 10.0  # Stream.accept_waveform takes long input in blocks of this many seconds


@dataclass(frozen=True)
class EndpointRule:
    must_contain_speech: bool
    min_trailing_silence: float  # seconds of CTC blanks at the end (0: not checked)
    min_utterance_length: float  # seconds (0: not checked)


@dataclass(frozen=True)
class EndpointConfig:
    """An endpoint fires when any rule matches (sherpa-onnx's defaults, rule 2 shortened for captions)."""

    rule1: EndpointRule = EndpointRule(False, ENDPOINT_IDLE_SECONDS, 0.0)  # nothing said for a long time
    rule2: EndpointRule = EndpointRule(True, ENDPOINT_PAUSE_SECONDS, 0.0)  # a pause after speech (dev-chosen, asr.config)
    rule3: EndpointRule = EndpointRule(False, 0.0, ENDPOINT_MAX_SEGMENT_SECONDS)  # maximum segment length

    def fires(self, had_speech: bool, trailing_silence: float, length: float) -> bool:
        for r in (self.rule1, self.rule2, self.rule3):
            if r.must_contain_speech and not had_speech:
                continue
            if r.min_trailing_silence and trailing_silence < r.min_trailing_silence:
                continue
            if r.min_utterance_length and length < r.min_utterance_length:
                continue
            if r.min_trailing_silence or r.min_utterance_length:
                return True
        return False


@dataclass(frozen=True)
class StreamingOptions:
    chunk: int = 0  # encoder frames per chunk (0: chunk_ms of them: 16 x 40 ms for 4x subsampling, 32 x 20 ms for
    # the Whisper encoder's 2x)
    chunk_ms: int = 640  # the chunk in milliseconds, when chunk is 0 (a multiple of the streaming model's frame)
    left_chunks: int = 4  # attention context in chunks (< 0: everything since the segment began)
    beam: int = 4  # CTC prefix beam for partial results
    final: str = "auto"  # second pass at an endpoint: any decoding method (asr.search.methods), none, or auto
    # (attention_rescoring when the model has an attention decoder, else mask_ctc when it has one, else none)
    endpoint: EndpointConfig = EndpointConfig()
    decode: DecodeOptions = DEFAULTS  # options of the partials' prefix beam (LM fusion, hotwords) and of the
    # second pass: the second pass decodes the segment exactly as offline decoding would with these options
    partial: str = "ctc"  # tentative text: "ctc" (prefix beam) or "mask_ctc" (prefix beam refined by the MLM decoder)
    refine_every: int = 1  # partial="mask_ctc": refine every this many chunks
    vad: bool = False  # gate with silero-vad: a segment in which it heard no speech shows and commits nothing
    history: int = 100  # committed segments a stream keeps (words, times); older ones are only in `committed`
    # second passes on a commit thread of their own, so partials never wait for them; None: when a final model decodes
    # each segment from its audio (Whisper: 1-2 s a segment), not for the streaming model's own second pass (the demo's
    # attention rescoring, ~0.1 s: on the decoding thread it gave as good partials under load, fewer light commits)
    background_commits: bool | None = None

    def __post_init__(self) -> None:
        if self.final not in FINAL_PASSES:
            raise UserError(f"unknown second pass {self.final!r}; choose from {', '.join(FINAL_PASSES)}")
        if self.partial not in ("ctc", "mask_ctc") or self.refine_every < 1:
            raise UserError(f"partial must be ctc or mask_ctc (not {self.partial!r}), refine_every at least 1")
        if self.chunk < 0 or self.beam < 1 or self.history < 1:
            raise UserError("chunk must be >= 0 (0: 640 ms), beam and history at least 1")
        if self.final == "ctc_lm" and not self.decode.lm:
            raise UserError("the ctc_lm second pass needs an LM directory (decode=DecodeOptions(lm=...), --lm)")


def chunk_frames(model, chunk_ms: int) -> int:
    """Encoder frames in ``chunk_ms`` milliseconds for ``model`` (its front end's frame shift times its subsampling);
    ValueError when the chunk is not a whole number of them."""
    n = chunk_ms / (frame_ms := round(1000 * encoder_frame_seconds(model.encoder.rate, model.cfg.frontend.frame_seconds), 3))
    if n < 1 or abs(n - round(n)) > 1e-6:
        raise UserError(f"--chunk-ms must be a positive multiple of {frame_ms:g} ms for this model, not {chunk_ms}")
    return round(n)


FINAL_PASSES = (*METHODS, "none", "auto")


def can_stream(model) -> bool:
    """A model decodes live by itself: a CTC head and an encoder trained for chunks."""
    return getattr(model, "ctc", True) is not None and bool(model.encoder.streaming)


def live_recognizer(loaded, options: StreamingOptions = StreamingOptions(), punctuator: Punctuator | None = None,
                    partial_model=None) -> "Recognizer":
    """The recognizer live captions use with ``loaded``: itself where it can stream; else ``partial_model`` (default
    the bundled streaming model, ``asr.config.STREAMING_MODEL``) shows the partials and ``loaded`` commits each
    segment from its audio (Whisper's decoder for the committed text, a streaming CTC model for the words as they come)."""
    if partial_model is None and can_stream(loaded.model):
        return Recognizer(loaded, options, punctuator=punctuator)
    comp = ctc_companion(loaded.model)  # the committer's CTC companion, if it is the streaming model
    shared = comp is not None and comp.loaded.path == resolve_model_path(STREAMING_MODEL)
    partial = partial_model or (comp.loaded if shared else STREAMING_MODEL)  # (one copy of it)
    return Recognizer(partial, options, punctuator=punctuator, final_model=loaded)


def streaming_options(lm_dir=None, hotwords=None, **options) -> StreamingOptions:
    """Keyword options -> :class:`StreamingOptions`: its own fields (``chunk=``, ``final=``...) and the
    decoding options of :func:`asr.search.options.decode_options` (``lm_dir=`` with its card, ``hotwords=``,
    ``beam=``...) in one call, as the Python API and the CLI take them."""
    own = {k: options.pop(k) for k in list(options) if k in StreamingOptions.__dataclass_fields__}
    if "decode" in own and (options or lm_dir is not None or hotwords is not None):
        raise UserError("give decoding options either as decode=DecodeOptions(...) or as keywords, not both")
    if "decode" not in own:
        boost = {"hotword_boost": options.pop("hotword_boost")} if "hotword_boost" in options else {}
        own["decode"] = decode_options(lm_dir, hotwords, **boost, **options)
    return StreamingOptions(**own)


@dataclass
class Round:
    """What one :meth:`Recognizer.step` did."""
    decoded: list["Stream"]  # the streams that decoded a chunk
    ended: list[tuple["Stream", Segment | None]]  # the segments ended: the stream and what it committed (None: nothing)
    decode_seconds: float  # the chunk decode (encoder, CTC, partials)
    final_seconds: float  # ending segments and landing commits on this thread (second passes run inline included)
    waits: list[float] = field(default_factory=list)  # per ``ended``: seconds from its endpoint to its commit
    commit_seconds: float = 0.0  # compute of the second passes on the commit thread that landed in this round
    light: int = 0  # segments ended in this round without a second pass


class Stream:
    """One audio source and everything that changes while it runs: the audio and features waiting, the encoder cache,
    the running segment (its encoder outputs, CTC log-probs, prefix beam, endpoint counters) and the captions. Only its
    own methods write that state: the recognizer runs the models over streams and hands each stream what they
    computed (:meth:`advance`, :meth:`show`, :meth:`commit`); it holds nothing of any stream's."""

    def __init__(self, recognizer: "Recognizer"):
        # what a stream needs of its recognizer, read once: the stream keeps no reference to it
        model = recognizer.model
        self._init_state = functools.partial(model.encoder.init_state, 1, device=recognizer.device)
        fusion_factory, width = recognizer.fusion_factory, recognizer.options.beam
        self._new_beam = lambda: PrefixBeam(width, fusion=fusion_factory() if fusion_factory else None)
        self.endpoint = recognizer.options.endpoint
        self.frame_seconds = recognizer.frame_seconds  # seconds per encoder frame (newly_shown frames x this: time)
        self.gate = StreamGate() if recognizer.options.vad else None  # silero-vad's view of this stream
        self._rate_hz = SAMPLE_RATE
        self._resampler = None
        self.fbank = streaming_features(model.cfg.frontend)  # the model's front end, as samples arrive
        # features not yet consumed by a chunk (an encoder whose first window reads frames before the first: zeros)
        self.feats = torch.zeros(model.encoder.left_pad, model.cfg.frontend.n_mels)
        self._pending: list[np.ndarray] = []  # 16 kHz samples whose features are not computed yet
        self._pending_n = 0
        self.samples_in = 0  # 16 kHz samples accepted
        self.finished = False  # no more audio will come
        self.closing = False  # finished, decoded to the end, and its last segment ended (its commit may be pending)
        self.ended = False  # ... and that commit has landed
        self.inflight: collections.deque[PendingCommit] = collections.deque()  # ended segments, commits pending
        self.partial = ""  # the running segment's partial text
        self.result = Captions(segments=collections.deque(maxlen=recognizer.options.history))
        # the audio since the running segment began, for a second-pass model that decodes segments from audio
        self.keep_audio = recognizer.final is not None
        self._audio: collections.deque = collections.deque()
        self._audio_start = 0  # stream sample where self._audio begins
        self.stats = {"chunks": 0, "tentative_changes": 0}  # committed text only appends (Captions.add): no revisions
        # (frame, wall time) of the tokens the last decode showed for the first time (partial latency); replaced
        # by every decode, so nothing accumulates however long the stream runs
        self.newly_shown: list[tuple[int, float]] = []
        self.begin_segment(0.0)

    # -- the running segment
    def begin_segment(self, start_seconds: float) -> None:
        """A new segment from ``start_seconds`` (stream time): the encoder starts its positions anew, a fresh
        prefix beam, the endpoint counters at zero."""
        self.state: EncoderState = self._init_state()
        self.beam = self._new_beam()  # partials (word n-gram fused with an LM)
        self.enc_chunks: list[torch.Tensor] = []  # (1, C, D) encoder outputs of this segment
        self.lp_chunks: list[torch.Tensor] = []  # (C, V) CTC log-probs of this segment
        self.seg_start = start_seconds
        self.seg_frames = 0
        self.trailing_blank = 0
        self.had_speech = False
        self.shown_frames: set[int] = set()
        self.refined: tuple[int, ...] | None = None  # partial="mask_ctc": the last refined partial
        self.heard = self.gate is None  # the VAD heard speech in this segment (no gate: taken as heard)
        if self.gate is not None:  # (what the VAD decided or skipped before this segment is never asked for again)
            self.gate.skip_to(start_seconds)

    @property
    def segment_end(self) -> float:
        """Stream time (s) the running segment's decoded frames reach."""
        return self.seg_start + self.seg_frames * self.frame_seconds

    def chunk_width(self, window: int) -> int:
        """Feature frames the next chunk reads (``window``, or fewer at the end of the input)."""
        return min(window, self.feats.size(0))

    def take_chunk(self, window: int, stride: int) -> torch.Tensor:
        """The next chunk's features, ``(chunk_width(window), F)``; a full window moves on by ``stride`` frames (the
        rest overlaps the next chunk), a short one (the end of the input) consumes everything."""
        w = self.chunk_width(window)
        x = self.feats[:w]
        self.feats = self.feats[min(stride, self.feats.size(0)):] if w == window else self.feats[:0]
        return x

    def advance(self, state: EncoderState, enc: torch.Tensor, lp: torch.Tensor) -> tuple[int, ...]:
        """One decoded chunk into the running segment: the encoder's new cache ``state``, its output ``enc``
        ``(1, C, D)`` and CTC log-probs ``lp`` ``(C, V)``. Advances the prefix beam and the endpoint counters, notes
        the frames whose tokens show for the first time; returns the best partial's tokens."""
        self.state = state
        self.enc_chunks.append(enc)
        self.lp_chunks.append(lp)
        self.beam.advance(lp)
        self.seg_frames += lp.size(0)
        self.stats["chunks"] += 1
        for is_blank in (lp.argmax(-1) == BLANK_ID).tolist():
            if is_blank:
                self.trailing_blank += 1
            else:
                self.trailing_blank = 0
                self.had_speech = True
        best = self.beam.nbest(1)[0]
        now = time.perf_counter()
        first = int(round(self.seg_start / self.frame_seconds))
        self.newly_shown = []
        for f in best.token_frames:
            if first + f not in self.shown_frames:
                self.shown_frames.add(first + f)
                self.newly_shown.append((first + f, now))
        return best.tokens

    def show(self, text: str, refined: tuple[int, ...] | None = None) -> None:
        """The running segment's partial text is now ``text`` (``refined``: the Mask-CTC refined tokens behind it);
        the tentative tail shows it after those of the segments whose commits are pending."""
        if refined is not None:
            self.refined = refined
        self.partial = text
        tail = self._tail()
        if tail != self.result.tentative:
            self.stats["tentative_changes"] += 1
            self.result.tentative = tail

    def heard_speech(self, end: float) -> bool:
        """Whether silero-vad heard speech in the running segment up to ``end`` seconds (call :func:`decide` first;
        once it has, its gate rests until the next segment: :meth:`Recognizer.decode` skips it). No gate: True."""
        self.heard = self.heard or self.gate.speech_between(self.seg_start, end)
        return self.heard

    def _tail(self) -> str:
        return " ".join(t for t in (*(p.partial for p in self.inflight), self.partial) if t)

    def close_segment(self, pending: PendingCommit) -> None:
        """The running segment has ended and its commit is ``pending`` (its second pass may still be running): a new
        segment begins where it ended; its partial text stays shown until the commit lands (:meth:`land`)."""
        self.inflight.append(pending)
        self.closing = self.closing or pending.last
        self.begin_segment(self.segment_end)
        self.partial = ""  # (the tail is unchanged: the ended segment's partial is still shown)

    def land(self, seg: Segment | None) -> None:
        """The oldest pending commit lands with ``seg`` (None: its segment said nothing): committed text, and the
        partial texts of the segments still pending and the running one as the tentative tail."""
        pending = self.inflight.popleft()
        if seg is not None:
            self.result.add(seg)
        self.ended = pending.last
        self.result.tentative = self._tail()  # text moving from the tail into the committed text is no revision

    @property
    def is_endpoint(self) -> bool:
        fs = self.frame_seconds
        return self.endpoint.fires(self.had_speech, self.trailing_blank * fs, self.seg_frames * fs)

    # -- audio in
    def accept_waveform(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Add samples at any rate (float in [-1, 1] or integer PCM, mono or two channels; checked as batch input
        is, :func:`asr.audio.as_samples`: NaN, an impossible rate... raise); resampled to 16 kHz on the fly. The
        samples wait until a chunk is ready; then their features are computed in one go (one filterbank call per
        chunk, not per block) in blocks of ``BLOCK_SECONDS`` (an hour given at once is held as its samples, about
        230 MB, until decoded: feed long audio in pieces and decode between them, as :meth:`LiveSession.feed`
        does)."""
        x = as_samples(samples, sample_rate, "<stream>", allow_empty=True)
        sample_rate = int(sample_rate)
        step = int(BLOCK_SECONDS * sample_rate)
        for i in range(0, x.size, step):
            block = x[i:i + step]
            if sample_rate != SAMPLE_RATE:
                if self._resampler is None or self._rate_hz != sample_rate:
                    self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
                    self._rate_hz = sample_rate
                block = self._resampler.resample_chunk(block)
            self._take(block)

    def _take(self, x: np.ndarray) -> None:
        """16 kHz samples into the stream: counted, shown to the VAD gate, queued for the filterbank."""
        if not x.size:
            return
        self.samples_in += x.size
        if self.keep_audio:
            self._audio.append(x)
        if self.gate is not None:
            self.gate.accept(x)
        self._pending.append(x)
        self._pending_n += x.size

    def segment_audio(self, start: float, end: float) -> np.ndarray:
        """The 16 kHz samples from ``start`` to ``end`` seconds of the stream (kept since the running segment
        began); what is before ``end`` is then dropped."""
        buf = np.concatenate(list(self._audio)) if self._audio else np.zeros(0, np.float32)
        a = max(0, int(round(start * SAMPLE_RATE)) - self._audio_start)
        b = max(a, int(round(end * SAMPLE_RATE)) - self._audio_start)
        out = buf[a:b].copy()
        self._audio = collections.deque([buf[b:]]) if b < buf.size else collections.deque()
        self._audio_start += min(b, buf.size)
        return out

    def feature_frames(self) -> int:
        """Feature frames waiting for the encoder, those of queued samples included (none computed here)."""
        return self.feats.size(0) + self.fbank.frames_after(self._pending_n)

    def compute_features(self) -> None:
        """The queued samples -> features (in blocks of ``BLOCK_SECONDS``)."""
        if not self._pending_n:
            return
        x = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_n = [], 0
        step = int(BLOCK_SECONDS * SAMPLE_RATE)
        self.feats = torch.cat([self.feats, *(self.fbank.accept(x[i:i + step]) for i in range(0, x.size, step))])

    def input_finished(self) -> None:
        """No more audio: the last partial chunk will be decoded, then :meth:`Recognizer.finalize`."""
        if self._resampler is not None:
            self._take(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self.finished = True

    @property
    def seconds(self) -> float:
        return self.samples_in / SAMPLE_RATE


class Recognizer:
    """The model and the options; decodes any number of :class:`Stream` objects in batches. Streams live on
    the model's device (``device``: where the model's weights are, unless given)."""

    def __init__(self, model, options: StreamingOptions = StreamingOptions(), device: str | torch.device | None = None,
                 punctuator: Punctuator | None = None, final_model=None):
        """``final_model`` (a loaded model or a name): the second pass decodes each segment's audio with it (its
        own features and encoder; e.g. Whisper's attention decoder over its 30-s window) instead of the streaming
        model's encoder output: the partials are ``model``'s, the committed text ``final_model``'s."""
        self.loaded: LoadedModel = model if hasattr(model, "model") else load_model(model, device or "cpu")
        self.model = self.loaded.model
        self.tokenizer = self.loaded.tokenizer
        if device is None:
            params = self.model.parameters() if isinstance(self.model, torch.nn.Module) else iter(())
            device = next(params, torch.empty(0)).device
        self.device = torch.device(device)
        self.final = None if final_model is None else \
            final_model if hasattr(final_model, "model") else load_model(final_model, str(self.device))
        committer = self.final or self.loaded
        # committed segments are cased and punctuated (partials stay raw), unless the model writes its own
        self.punctuator = None if getattr(committer.tokenizer, "cased", False) else punctuator
        if getattr(self.model, "ctc", True) is None:
            raise UserError(f"{self.loaded.path}: streaming needs a CTC head, and this model has none "
                             "(full context only: asr transcribe / asr eval)")
        if not self.model.encoder.streaming:
            raise UserError(f"{self.loaded.path}: streaming needs a model trained for chunks (causal convolution)")
        try:
            streaming_features(self.model.cfg.frontend)
        except ValueError as e:
            raise UserError(f"{self.loaded.path}: {e}") from None
        self.options = replace(options, final=self._second_pass(options))
        if self.options.partial == "mask_ctc" and getattr(self.model, "mlm", None) is None:
            raise UserError(f"{self.loaded.path}: partial='mask_ctc' needs a model with a Mask-CTC decoder")
        self.fusion_factory = word_fusion_factory(self.options.decode, self.tokenizer)
        self.frame_seconds = encoder_frame_seconds(self.model.encoder.rate, self.model.cfg.frontend.frame_seconds)
        if self.options.chunk == 0:
            self.options = replace(self.options, chunk=chunk_frames(self.model, self.options.chunk_ms))
        options = self.options
        self.window, self.stride = self.model.encoder.chunk_window(options.chunk)
        self.left_frames = options.left_chunks * options.chunk if options.left_chunks >= 0 else -1
        background = self.final is not None if options.background_commits is None else options.background_commits
        self.options = replace(self.options, background_commits=background)
        self.committer = Committer(background)

    def _second_pass(self, options: StreamingOptions) -> str:
        """The second pass to run (the one policy of the CLI and the API): ``auto`` resolved for the committing model
        (attention rescoring, else Mask-CTC; a final model: its default, but its attention beam where that is joint with
        a CTC companion: one stream's p90 partial latency 1.12 s, joint 1.88 s); one it cannot run is an error."""
        m = (self.final or self.loaded).model
        have = [x for x in available_methods(m, with_lm=bool(options.decode.lm))
                if x in getattr(m, "second_passes", METHODS)]  # an ONNX model runs only some of them
        if options.final == "auto":
            if self.final is not None:  # a commit holds up the partials: Whisper's decoder alone, not the joint search
                return "attention_beam" if ctc_companion(m) is not None else default_method(m)
            return next((x for x in ("attention_rescoring", "mask_ctc") if x in have), "none")
        if options.final != "none" and options.final not in have:
            raise UserError(f"{(self.final or self.loaded).path}: this model cannot run the second pass "
                            f"{options.final!r} (it can: {', '.join(have + ['none'])})")
        return options.final

    def create_stream(self) -> Stream:
        return Stream(self)

    def is_ready(self, stream: Stream) -> bool:
        """A full chunk of features is waiting (or the input ended and something is left); when so, the features of
        the queued samples are computed."""
        n = stream.feature_frames()
        ready = n >= self.window or (stream.finished and n >= self.model.encoder.receptive_field)
        if ready:
            stream.compute_features()
        return ready

    @torch.inference_mode()
    def decode(self, streams: list[Stream]) -> None:
        """Encode one chunk of every ready stream in one batch (however far each is into its segment:
        :func:`asr.models.state.batch_states`; a stream's shorter last window, and for an encoder that cannot mask
        padded caches (ONNX) streams with other cache lengths, in batches of their own) and advance their partials."""
        ready = [s for s in streams if self.is_ready(s)]
        decide([s.gate for s in ready if not s.heard])  # silero-vad, batched (until it hears speech)
        m = self.model
        ragged = getattr(m.encoder, "ragged_batches", True)
        groups: dict[tuple[int, int], list[Stream]] = {}
        for s in ready:
            groups.setdefault((0 if ragged else s.state.cache_frames, s.chunk_width(self.window)), []).append(s)
        for group in groups.values():
            x = torch.stack([s.take_chunk(self.window, self.stride) for s in group]).to(self.device)
            x = (x - m.cmvn_mean) / m.cmvn_std
            state = batch_states([s.state for s in group])
            y, new = m.encoder.forward_chunk(x, state, self.left_frames, last=x.size(1) < self.window)
            lp = m.ctc_log_probs(y).float().cpu()
            for i, s in enumerate(group):
                self._show(s, s.advance(row_state(new, state, i, y.size(1), self.left_frames), y[i:i + 1], lp[i]))

    def _show(self, s: Stream, tokens: tuple[int, ...]) -> None:
        """The partial text of ``s`` from its best tokens (refined by Mask-CTC when asked; nothing while the VAD has
        heard no speech in the segment)."""
        refined = None
        if self.options.partial == "mask_ctc" and tokens:
            if s.stats["chunks"] % self.options.refine_every == 0 or s.refined is None:
                refined = self._refine(s, tokens)
            tokens = refined or s.refined
        text = self.tokenizer.decode(tokens)
        if not s.heard_speech(s.segment_end):
            text = ""  # nobody spoke in this segment (yet): show nothing
        s.show(text, refined)

    def _refine(self, s: Stream, tokens) -> tuple[int, ...]:
        """Mask-CTC refinement of the running segment's partial: the CTC tokens of the segment so far whose
        confidence is below the threshold are re-predicted by the MLM decoder over the segment's encoder output
        (WeNet and sherpa show CTC partials only)."""
        enc = torch.cat(s.enc_chunks, 1)  # (1, T, D)
        d = self.options.decode
        return mask_ctc(self.model, enc, torch.tensor([enc.size(1)], device=enc.device), d.mask_threshold,
                        d.mask_iterations, schedule=d.mask_schedule)[0][0].tokens

    def step(self, streams: list[Stream], on_partial: Callable[[Stream], None] | None = None,
             light: bool = False) -> Round:
        """The live loop's one round (the caption server, ``asr live``, the Python API and the benchmarks run it): one
        chunk of every ready stream in one batch (``on_partial`` sees each before anything is committed), then the
        segments of those at an endpoint, and of those whose input ended and is decoded to its end, end (their second
        passes run inline or on the commit thread; ``light``: none, see :meth:`close_segments`), and the commits that
        are ready land, in order."""
        t0 = time.perf_counter()
        ready = [s for s in streams if self.is_ready(s)]
        self.decode(ready)
        t1 = time.perf_counter()
        for s in ready if on_partial is not None else ():
            on_partial(s)
        t2 = time.perf_counter()
        decoded = set(map(id, ready))
        ending = [s for s in streams if (id(s) in decoded and s.is_endpoint)
                  or (s.finished and not s.closing and not self.is_ready(s))]
        light_n = self.close_segments(ending, light) if ending else 0
        landed = self.land(streams)
        return Round(ready, [(s, seg) for s, seg, _, _ in landed], t1 - t0, time.perf_counter() - t2,
                     [w for _, _, w, _ in landed], sum(c for *_, c in landed) if self.committer.background else 0.0,
                     light_n)

    def pending(self, stream: Stream) -> bool:
        """``stream`` has work for :meth:`step` now: a chunk ready, its input ended and its last segment not ended, or
        a commit ready to land (its second pass done)."""
        return self.is_ready(stream) or (stream.finished and not stream.closing) or \
            bool(stream.inflight and stream.inflight[0].job.done())

    def decode_ready(self, stream: Stream) -> list[Segment]:
        """Run rounds of ``stream`` alone while it is :meth:`pending`, then wait for its pending commits. Returns the
        segments committed."""
        out = []
        while True:
            if not self.pending(stream):
                if not stream.inflight:
                    return out
                stream.inflight[0].job.exception()  # waits for the second pass (what it raised lands with it)
            out += [seg for _, seg in self.step([stream]).ended if seg is not None]

    def finalize(self, stream: Stream) -> Segment | None:
        """End the running segment: second pass, commit its text with word times, start a new segment.
        Returns the committed segment (None when it held no words). :meth:`finalize_many` of one stream."""
        return self.finalize_many([stream])[0]

    def finalize_many(self, streams: list[Stream], light: bool = False) -> list[Segment | None]:
        """End the running segment of each of ``streams`` (distinct) and wait for their commits (and those pending
        before them): the segment each committed (None: nothing). See :meth:`close_segments`."""
        self.close_segments(streams, light)
        landed = {id(s): seg for s, seg, _, _ in self.land(streams, wait=True)}  # (a stream's last is its newest)
        return [landed.get(id(s)) for s in streams]

    @torch.inference_mode()
    def close_segments(self, streams: list[Stream], light: bool = False) -> int:
        """End the running segment of each of ``streams`` (distinct): each begins a new one at once, and the ended
        segment's second pass is submitted to the committer in batches of ``SECOND_PASS_BATCH``
        (:func:`asr.search.methods.search` over its encoder output with ``options.decode``, as offline decoding would,
        or the final model's decode of its audio). ``light`` (a server that is behind), or a committer with
        ``COMMIT_BACKLOG`` jobs unfinished: no second pass, the partial's best path is committed. Returns how many
        were light."""
        decide([s.gate for s in streams if not s.heard])
        light = light or self.committer.backlog >= config.COMMIT_BACKLOG
        final = self.final is not None and not light
        method = "none" if light else self.options.final
        n = config.SECOND_PASS_BATCH
        for i in range(0, len(streams), n):
            batch, t_end = streams[i:i + n], time.perf_counter()
            todo = [s for s in batch if s.lp_chunks]
            ended = [self._ended(s, final, not final and method != "none") for s in todo]
            job = functools.partial(final_model_passes, self.final, method, self.options.decode, self.device, ended) \
                if final else functools.partial(own_passes, self.model, self.tokenizer, method, self.options.decode,
                                                self.frame_seconds, ended)
            cheap = method == "none" or not any(e.tokens for e in ended)  # nothing to wait for: no second pass runs
            fut = self.committer.submit(job, inline=cheap) if todo else None
            for s in batch:
                paused = s.seg_frames * self.frame_seconds < self.options.endpoint.rule3.min_utterance_length
                pending = (fut, todo.index(s)) if s in todo else (Committer.done([None]), 0)
                s.close_segment(PendingCommit(*pending, s.partial, paused, s.finished and not self.is_ready(s), t_end))
        return len(streams) if light else 0

    def _ended(self, s: Stream, audio: bool, enc: bool) -> EndedSegment:
        """What the second pass of ``s``'s running segment reads: its samples when ``audio`` (a final model's pass),
        its encoder output when ``enc`` (a search over it); nothing else is copied (a light commit reads neither)."""
        end = s.segment_end
        a = s.segment_audio(s.seg_start if audio else end, end) if s.keep_audio else None  # (drops the audio before end)
        return EndedSegment(s.beam.nbest(1)[0].tokens, torch.cat(s.lp_chunks),
                            torch.cat(s.enc_chunks, 1)[0] if enc else None, a if audio else None, s.seg_start, end,
                            s.heard_speech(end))

    def land(self, streams: list[Stream], wait: bool = False) -> list[tuple[Stream, Segment | None, float, float]]:
        """Land the commits of ``streams`` whose second passes are done (``wait``: all of them, waiting), in the order
        their segments ended, punctuated: ``(stream, segment, seconds since it ended, compute seconds)`` each."""
        out = []
        for s in streams:
            while s.inflight and (wait or s.inflight[0].job.done()):
                p = s.inflight[0]
                try:
                    seg, seconds = p.outcome()
                except BaseException:
                    s.land(None)  # the segment is lost, the stream goes on
                    raise
                if seg is not None and self.punctuator is not None:
                    seg = punctuated(self.punctuator, s.result, seg, p.paused)
                s.land(seg)
                out.append((s, seg, time.perf_counter() - p.closed_at, seconds))
        return out
