"""The ``asr`` command line. Each command parses options and calls one library function; the decoding
flags are declared once (:mod:`asr.apps.cli_common`), the data / LM and training commands live in
:mod:`asr.apps.cli_data` and :mod:`asr.apps.cli_train`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from asr.apps import cli_data, cli_train  # noqa: F401 - they add their commands to the app
from asr.apps.cli_common import (
    BACKEND_OPT,
    DEFAULT_MODEL,
    QUANTIZE_OPT,
    _fail,
    _run,
    app,
    check_decoders,
    decode_options_from,
    load,
    sigterm_as_interrupt,
    user_errors,
    with_decode_flags,
)
from asr.config import (
    DECODE_WORKERS,
    ENDPOINT_IDLE_SECONDS,
    ENDPOINT_MAX_SEGMENT_SECONDS,
    ENDPOINT_PAUSE_SECONDS,
)
from asr.search.options import DEFAULTS


@app.command("info")
def info(paths: List[Path] = typer.Argument(..., help="Audio files (wav, flac, ogg, mp3; any rate, any channels).")) -> None:
    """Decode audio files as every command does and print duration and level; bad files get one-line errors."""
    import numpy as np

    from asr.audio import SAMPLE_RATE, AudioError, load_audio

    failed = 0
    for p in paths:
        try:
            x = load_audio(p)
        except AudioError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            failed += 1
            continue
        rms = float(np.sqrt(np.mean(x**2)))
        typer.echo(f"{p}\t{x.size / SAMPLE_RATE:.3f} s\tpeak {float(np.abs(x).max()):.3f}\trms {rms:.4f}")
    if failed:
        raise typer.Exit(1)



def _check_outputs(formats: list[str], output_dir: Optional[Path], known) -> None:
    for f in formats:
        if f not in known:
            _fail(f"unknown format {f!r}; choose from {', '.join(known)}")
    if output_dir is None and formats != ["txt"]:
        _fail(f"--format {' --format '.join(formats)} writes files: give --output-dir (without it the text is printed)")
    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        _fail(f"{output_dir}: --output-dir is a file, not a folder")


@app.command("transcribe")
@with_decode_flags
def transcribe_cmd(
    paths: List[str] = typer.Argument(..., help="Audio files, folders, globs, or manifests (lhotse .jsonl.gz, .list/.scp)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model directory (asr export-model) or a bundled model's name (default: the bundled default; demo: the small Conformer)."),
    decoder: str = typer.Option("auto", "--decoder", help="auto (ctc_greedy; for a model without CTC joint_ctc_attention with its CTC companion, else attention_beam), ctc_greedy, ctc_prefix_beam, attention_beam, joint_ctc_attention, attention_rescoring, mask_ctc, ctc_lm (with --lm)."),
    formats: List[str] = typer.Option(["txt"], "--format", help="txt, json, srt, vtt, tsv (repeatable; anything but txt needs --output-dir)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Write ID.FORMAT files here (default: print text to stdout)."),
    batch_seconds: float = typer.Option(60.0, help="Audio seconds per decoding batch."),
    max_segment: float = typer.Option(20.0, help="Long recordings are cut into segments of at most this many seconds."),
    skip_existing: bool = typer.Option(False, help="Skip inputs whose outputs all exist (resume a killed job)."),
    vad: bool = typer.Option(True, help="Cut long recordings at speech boundaries (silero-vad) and decode speech only; --no-vad: cut at quiet points and decode everything."),
    punctuate: bool = typer.Option(True, help="Cased, punctuated text (the bundled punctuator); json keeps the raw words too. --no-punctuate: the recognizer's own upper-case words."),
    plot: bool = typer.Option(False, help="Also draw ID.png: spectrogram, word boundaries and CTC spikes (first 30 s)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    progress: bool = typer.Option(True, help="Show a progress bar with the running real-time factor."),
    quantize: Optional[str] = QUANTIZE_OPT,
    backend: str = BACKEND_OPT,
    decode: dict = None,
) -> None:
    """Transcribe recordings. A file that cannot be read gets a one-line error and the rest go on; the exit
    code is 1 if any failed."""
    import torch

    from asr.inference.transcribe import (
        FORMATS,
        expand_inputs,
        outputs_exist,
        transcribe_files,
        unique_ids,
        write_outputs,
    )

    if threads:
        torch.set_num_threads(threads)
    _check_outputs(formats, output_dir, FORMATS)
    if not max_segment >= 1.0:
        _fail(f"--max-segment must be at least 1 second, not {max_segment}")
    if not batch_seconds > 0:
        _fail(f"--batch-seconds must be positive, not {batch_seconds}")
    opts = decode_options_from(decode, timestamps=plot or any(f in ("json", "srt", "vtt", "tsv") for f in formats))
    loaded = load(model, device, quantize, backend)
    from asr.search.methods import resolve_methods

    decoder = resolve_methods(loaded.model, [decoder])[0]
    check_decoders(loaded, opts, [decoder])
    inputs, errors = expand_inputs(paths)
    for e in errors:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    inputs = unique_ids(inputs)
    if skip_existing and output_dir:
        inputs = [(i, p) for i, p in inputs if not outputs_exist(i, output_dir, formats)]
    extra = {"model": str(loaded.path), "decoder": decoder}
    unwritten: list[str] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=None, unit="s", desc="transcribe", dynamic_ncols=True, file=sys.stderr,
                   bar_format="{desc}: {n:.1f} s audio [{elapsed}] {postfix}")

    def on_result(r) -> None:
        failed = write_outputs(r, output_dir, formats, extra) if output_dir is not None else []
        for e in failed:  # one unwritable output: say so, keep its text, go on with the batch
            on_error(f"{e}; its text is printed to stdout")
        unwritten.extend(failed)
        if output_dir is None or failed:
            typer.echo(r.text if len(inputs) == 1 and not failed else f"{r.id}\t{r.text}")
        if plot:
            from asr.evaluation.plots import plot_alignment

            target = (output_dir or Path(".")) / f"{r.id}.png"
            try:
                plot_alignment(loaded, r.path, target)
            except OSError as e:
                on_error(f"{target}: cannot write ({e.strerror or e})")
                unwritten.append(str(target))

    def on_error(msg: str) -> None:
        _print_error(msg, bar)

    def on_progress(done: float, wall: float) -> None:
        if bar is not None:
            bar.n = done
            if done > 0:  # nothing decoded yet (silence skipped so far): no RTF to show
                bar.set_postfix_str(f"RTF {wall / done:.3f}")

    from asr.inference.punctuate import cached_punctuator
    from asr.inference.vad import shared_vad

    summary = transcribe_files(loaded, inputs, decoder, opts, batch_seconds, max_segment, device, on_result, on_error,
                               on_progress, vad=shared_vad() if vad else None,
                               punctuator=_run(cached_punctuator) if punctuate else None)
    if bar is not None:
        bar.close()
    failed = len(summary.failed) + len(errors)
    typer.echo(f"{summary.files} file(s), {summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s "
               f"(RTF {summary.rtf:.3f}); {failed} failed" + (f"; {len(unwritten)} output(s) not written" if unwritten else ""),
               err=True)
    if failed or unwritten:
        raise typer.Exit(1)


def _print_error(msg: str, bar=None) -> None:
    """``error: msg`` on stderr, on its own line (above a progress bar, not after its carriage return)."""
    if bar is not None:
        bar.write(typer.style(f"error: {msg}", fg=typer.colors.RED), file=sys.stderr)
    else:
        typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)


@app.command("eval")
@with_decode_flags
def eval_cmd(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model directory or a bundled model's name (default: the bundled default)."),
    manifests: Optional[Path] = typer.Option(None, "--manifests", help="Folder with lhotse cuts (asr data prepare)."),
    subset: str = typer.Option("test", help="Subset of --manifests to score."),
    refs: Optional[Path] = typer.Option(None, "--refs", help="Instead of manifests: a TSV 'path<TAB>reference' (or ID/path/reference columns)."),
    decoders: List[str] = typer.Option(["auto"], "--decoder", help="Decoders to compare (repeatable; 'all' for every one the model has; auto: ctc_greedy; for a model without CTC joint_ctc_attention with its CTC companion, else attention_beam)."),
    compare_lm: bool = typer.Option(False, "--compare-lm", help="With --lm: also decode each LM-using decoder without it (rows METHOD and METHOD+lm)."),
    by_speaker: bool = typer.Option(False, "--by-speaker", help="Also WER/CER per speaker (per voice on the synthetic corpus, from its SPEAKERS.TXT)."),
    limit: int = typer.Option(0, help="Score only the first N utterances (0: all)."),
    spread: bool = typer.Option(False, "--spread", help="With --limit: N utterances evenly spaced over the subset instead of the first N (which follow the folder order and may miss speakers)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write per-utterance details, results.md/json and a WER-vs-speed plot here."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N."),
    quantize: Optional[str] = QUANTIZE_OPT,
    backend: str = BACKEND_OPT,
    decode: dict = None,
) -> None:
    """Score decoders: WER/CER with substitution/deletion/insertion counts and the real-time factor of the
    whole decode; per-utterance details (worst first) and a WER-vs-speed plot with --out-dir."""
    import torch

    from asr.evaluation.scoring import evaluate_and_report, load_refs_tsv, spread_subset

    if threads:
        torch.set_num_threads(threads)
    if limit < 0:
        _fail(f"--limit must be 0 (all) or a positive number of utterances, not {limit}")
    opts = decode_options_from(decode, timestamps=False)
    loaded = load(model, device, quantize, backend)
    from asr.search.methods import resolve_methods

    methods = resolve_methods(loaded.model, decoders, with_lm=bool(opts.lm))
    check_decoders(loaded, opts, methods)
    errors: list[str] = []
    if refs is not None:
        cuts, errors = _run(load_refs_tsv, refs)
        for e in errors:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        name = refs.stem
    elif manifests is not None:
        from asr.data.prepare import load_cuts

        cuts = _run(load_cuts, manifests, subset).to_eager()
        name = subset
    else:
        _fail("give --manifests (and --subset) or --refs")
    if limit:
        cuts = spread_subset(cuts, limit) if spread else cuts.subset(first=limit)
    if len(cuts) == 0:
        _fail(f"{refs or manifests}: nothing to score ({len(errors)} unusable row(s))")
    table = _run(evaluate_and_report, loaded, cuts, name, methods, opts, out_dir, device, echo=typer.echo,
                 compare_lm=compare_lm, by_speaker=by_speaker)
    typer.echo(table)
    if errors:
        typer.secho(f"error: {len(errors)} row(s) could not be scored and are not in these figures", fg=typer.colors.RED,
                    err=True)
        raise typer.Exit(1)



@app.command("bench")
def bench_cmd(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model directory, a bundled model's name, or a preset name (tiny, base, large) with random weights."),
    decoders: List[str] = typer.Option(["all"], "--decoder", help="Decoders to time (repeatable; 'all')."),
    seconds: float = typer.Option(20.0, help="Utterance length in seconds."),
    batch: int = typer.Option(1, help="Utterances per batch."),
    beam: int = typer.Option(DEFAULTS.beam, help="Beam size."),
    output_tokens: int = typer.Option(0, help="Force this many output tokens in AR / Mask-CTC search (0: natural length; random weights need it)."),
    runs: int = typer.Option(5, help="Timed runs per decoder (the median is reported)."),
    threads: int = typer.Option(2, help="CPU threads for torch."),
    vocab_size: int = typer.Option(5000, help="Vocabulary size for a preset with random weights."),
    uncached: bool = typer.Option(True, help="Also time AR beam search recomputing the whole prefix each step."),
    mask_iterations: int = typer.Option(DEFAULTS.mask_iterations, help="Mask-CTC iterations."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N."),
    quantize: Optional[str] = QUANTIZE_OPT,
) -> None:
    """Speed of each decoder: real-time factor of the whole decode (fbank, encoder, search) and of the search
    alone, medians of several runs."""
    import torch

    from asr.evaluation.bench import bench_decoders

    torch.set_num_threads(threads)
    table = _run(bench_decoders, model, decoders, seconds, batch, beam, output_tokens, runs, vocab_size, uncached, device,
                 mask_iterations, quantize)
    typer.echo(table)



@app.command("live")
@with_decode_flags
def live_cmd(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model directory or a bundled model's name (default: the bundled default)."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="Feed this recording instead of the microphone (paced at real time)."),
    fast: bool = typer.Option(False, help="With --input: as fast as possible instead of real time."),
    input_device: Optional[str] = typer.Option(None, "--input-device", help="Microphone (index or name; see --list-devices)."),
    samplerate: Optional[int] = typer.Option(None, help="Capture rate (default: the device's); resampled to 16 kHz."),
    list_devices_flag: bool = typer.Option(False, "--list-devices", help="List audio devices and exit."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the running transcript: .txt, .srt, .vtt or .jsonl."),
    chunk_ms: int = typer.Option(640, help="Chunk size in milliseconds (a multiple of the encoder frame)."),
    left_chunks: int = typer.Option(4, help="Attention context in chunks."),
    final: Optional[str] = typer.Option(None, help="Second pass at an endpoint: any decoder, or none (default auto: attention_rescoring when the model has an attention decoder, with --lm fused into it, else mask_ctc, else none)."),
    partial: str = typer.Option("ctc", help="Tentative text: ctc (prefix beam) or mask_ctc (refined by the MLM decoder)."),
    commit_thread: Optional[bool] = typer.Option(None, "--commit-thread/--no-commit-thread", help="Second passes on a thread of their own, so partials never wait for a commit (default: when a final model such as Whisper's decoder commits each segment from its audio, and not with --fast; docs/serving.md)."),
    silence_after_speech: float = typer.Option(ENDPOINT_PAUSE_SECONDS, help="Endpoint after this many seconds of silence following speech."),
    silence_before_speech: float = typer.Option(ENDPOINT_IDLE_SECONDS, help="Endpoint after this much silence when nothing was said."),
    max_segment: float = typer.Option(ENDPOINT_MAX_SEGMENT_SECONDS, help="Endpoint when a segment reaches this many seconds."),
    stats: bool = typer.Option(False, "--stats", help="Print caption metrics at the end (RTF, latencies, tentative changes)."),
    threads: int = typer.Option(1, help="CPU threads for torch."),
    serve_flag: bool = typer.Option(False, "--serve", help="Serve a caption web page (HTTP + WebSocket) instead of the terminal."),
    host: str = typer.Option("127.0.0.1", help="--serve: address to bind (off loopback a token is required: --token, or one is generated and printed with the URL)."),
    token: Optional[str] = typer.Option(None, "--token", help="--serve: the page and every WebSocket need ?token=THIS."),
    no_auth: bool = typer.Option(False, "--no-auth", help="--serve: no token even off loopback (anyone who reaches the address can listen in)."),
    allow_origin: Optional[List[str]] = typer.Option(None, "--allow-origin", help="--serve: another web origin (scheme://host:port) whose pages may connect (repeatable; the server's own always may)."),
    certfile: Optional[Path] = typer.Option(None, "--certfile", help="--serve: TLS certificate (PEM): https / wss, so LAN browsers give the page their microphone."),
    keyfile: Optional[Path] = typer.Option(None, "--keyfile", help="--serve: TLS private key (PEM), when not in --certfile."),
    port: int = typer.Option(8765, help="--serve: port."),
    no_mic: bool = typer.Option(False, "--no-mic", help="--serve: no server microphone (browser clients only)."),
    max_streams: int = typer.Option(0, help="--serve: live audio clients at once; beyond it a new one is refused (close code 1013, try again later) instead of slowing everyone. 0: the capacity measured for the model (its serving.json), else 20 (docs/serving.md)."),
    workers: int = typer.Option(DECODE_WORKERS, help="--serve: decoding threads sharing the streams (default: one per core, up to 2; keep workers x --threads <= cores)."),
    vad: bool = typer.Option(True, help="Gate with silero-vad: a segment in which nobody spoke shows and commits nothing (noise, tones, music)."),
    punctuate: bool = typer.Option(True, help="Committed captions cased and punctuated (the tentative tail stays raw)."),
    device: str = typer.Option("cpu", help="Compute device: cpu, cuda, cuda:N."),
    quantize: Optional[str] = QUANTIZE_OPT,
    backend: str = BACKEND_OPT,
    decode: dict = None,
) -> None:
    """Live captions from the microphone (or --input FILE) in the terminal; Ctrl-C ends cleanly and keeps the
    last segment. With --serve, a caption web page at http://HOST:PORT/ shows them, and browsers can send
    their own microphone. The second pass decodes each segment with the decoding flags, as `asr transcribe` does."""
    import torch

    from asr.apps import live

    if list_devices_flag:
        typer.echo(live.list_devices())
        return
    torch.set_num_threads(threads)
    from asr.inference.streaming import EndpointConfig, EndpointRule, StreamingOptions, live_recognizer

    loaded = load(model, device, quantize, backend)
    ep = EndpointConfig(EndpointRule(False, silence_before_speech, 0.0), EndpointRule(True, silence_after_speech, 0.0),
                        EndpointRule(False, 0.0, max_segment))
    dopts = decode_options_from(decode)
    final = final or "auto"  # the one policy: Recognizer._second_pass
    opts = _run(StreamingOptions, chunk_ms=chunk_ms, left_chunks=left_chunks, final=final, partial=partial,
                endpoint=ep, decode=dopts, vad=vad,  # --fast: faster than the commit thread could keep up with
                background_commits=False if fast and commit_thread is None else commit_thread)
    from asr.inference.punctuate import cached_punctuator

    rec = _run(live_recognizer, loaded, opts, punctuator=_run(cached_punctuator) if punctuate else None)
    check_decoders(loaded, dopts, [rec.options.final] if rec.options.final != "none" else [])
    mic_stats = live.MicStats()
    source = _run(live.live_source, input_file, fast, input_device, samplerate, mic=not (serve_flag and no_mic),
                  mic_stats=mic_stats)
    if input_file is None and source is not None:
        typer.echo("listening (Ctrl-C to stop)...", err=True)
    sigterm_as_interrupt()  # SIGTERM ends it as Ctrl-C does: the last segment is kept
    try:
        if serve_flag:
            figures = _run(live.caption_server, rec, source, host, port, output, log=lambda m: typer.echo(m, err=True),
                           max_streams=max_streams, workers=workers, token=token, no_auth=no_auth, allow_origins=allow_origin or (),
                           certfile=certfile, keyfile=keyfile)
            if stats:
                typer.echo(json.dumps(figures), err=True)
            return
        st = _run(live.caption_terminal, rec, source, output)
    except Exception as e:  # noqa: BLE001 - audio device errors are one line
        if type(e).__name__ == "PortAudioError":
            _fail(f"audio device: {e}")
        raise
    st.overflows = mic_stats.overflows
    if mic_stats.overflows:
        typer.echo(f"warning: {mic_stats.overflows} input overflow(s): audio was dropped by the device", err=True)
    if stats:
        typer.echo(st.report(), err=True)


@app.command("bench-stream")
def bench_stream_cmd(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model directory, a bundled model's name, or a preset (tiny, base, large) with random weights."),
    chunks_ms: List[int] = typer.Option([640, 320], "--chunk-ms", help="Chunk sizes to time (repeatable)."),
    left_chunks: int = typer.Option(4, help="Attention context in chunks."),
    seconds: float = typer.Option(60.0, help="Audio streamed per measurement."),
    long_minutes: float = typer.Option(0.0, help="Also stream this many minutes and compare the last minute's chunk cost with the first's."),
    manifests: Optional[Path] = typer.Option(None, "--manifests", help="Also measure streaming WER vs full context on a subset of these manifests."),
    refs: Optional[Path] = typer.Option(None, "--refs", help="Instead of --manifests: a TSV 'path<TAB>reference' (as `asr eval --refs`)."),
    subset: str = typer.Option("test", help="Subset for the streaming WER."),
    limit: int = typer.Option(100, help="Utterances for the streaming WER (spread over the set with --refs)."),
    threads: int = typer.Option(1, help="CPU threads for torch."),
    lm_dir: Optional[Path] = typer.Option(None, "--lm", help="Also measure streaming WER with the ctc_lm second pass."),
    finals: List[str] = typer.Option(["attention_rescoring"], "--final", help="With --manifests: second pass at each endpoint (attention_rescoring, mask_ctc, none; ctc_lm with --lm); repeatable."),
    partials: List[str] = typer.Option(["ctc"], "--partial", help="With --manifests: tentative text from ctc (prefix beam) or mask_ctc (refined by the MLM decoder); repeatable."),
    pauses: List[float] = typer.Option([], "--pause", help="With --manifests: end-of-speech silence (rule 2, seconds) to measure (repeatable; default: the live default)."),
    quantize: Optional[str] = QUANTIZE_OPT,
) -> None:
    """Streaming speed (real-time factor per chunk size, bounded per-chunk cost) and, with --manifests,
    streaming WER against full-context WER plus caption stability (tentative text erased and flicker)."""
    import torch

    from asr.evaluation.stream_bench import chunk_rtf, streaming_wer
    from asr.inference.streaming import FINAL_PASSES

    bad = [f for f in finals if f not in FINAL_PASSES or f in ("ctc_lm", "auto")] + [p for p in partials if p not in ("ctc", "mask_ctc")]
    if bad:
        _fail(f"unknown --final / --partial {bad[0]!r} (finals: a decoder (ctc_lm only with --lm) or none; partials: ctc, mask_ctc)")
    torch.set_num_threads(threads)
    for c in chunks_ms:
        typer.echo(json.dumps(_run(chunk_rtf, model, c, left_chunks, seconds, quantize=quantize)))
    if long_minutes:
        typer.echo(json.dumps(_run(chunk_rtf, model, chunks_ms[0], left_chunks, seconds, long_minutes, quantize)))
    if manifests or refs:
        from asr.evaluation.evaluate import evaluate_cuts
        from asr.inference.streaming import StreamingOptions, live_recognizer
        from asr.search.methods import default_method

        loaded = load(model, quantize=quantize)
        cuts = _stream_cuts(manifests, refs, subset, limit)
        auto = live_recognizer(loaded, StreamingOptions()).options.final  # the streams' default second pass
        method = default_method(loaded.model) if auto == "none" else auto  # in full context
        full = evaluate_cuts(loaded, cuts, method)
        typer.echo(json.dumps({f"full_context_{method}_wer": round(full.wer.rate, 4)}))
        for c in chunks_ms:
            for p in pauses or [None]:
                for part in partials:
                    for fin in finals:
                        typer.echo(json.dumps(streaming_wer(loaded, cuts, c, left_chunks, fin, pause=p, partial=part)))
        if lm_dir is not None:
            from asr.search.options import decode_options

            dopts = _run(decode_options, lm_dir)
            check_decoders(loaded, dopts, ["ctc_lm"])
            for c in chunks_ms:
                typer.echo(json.dumps(streaming_wer(loaded, cuts, c, left_chunks, "ctc_lm", dopts)))


def _stream_cuts(manifests: Optional[Path], refs: Optional[Path], subset: str, limit: int):
    """bench-stream's utterances: the first ``limit`` of a manifest subset, or ``limit`` spread over a refs TSV
    (its unreadable rows reported, one line each)."""
    if refs is None:
        from asr.data.prepare import load_cuts

        return _run(load_cuts, manifests, subset).to_eager().subset(first=limit)
    from asr.evaluation.scoring import load_refs_tsv, spread_subset

    cuts, errors = _run(load_refs_tsv, refs)
    for e in errors:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    if len(cuts) == 0:
        _fail(f"{refs}: nothing to score ({len(errors)} unusable row(s))")
    return spread_subset(cuts, limit) if limit else cuts


@app.command("bench-serve")
def bench_serve_cmd(
    audio: List[Path] = typer.Option(..., "--audio", help="Recordings each client streams, one after another with a second of silence between (looped to --seconds); repeatable."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model directory or a bundled model's name (default: the bundled default)."),
    clients: List[int] = typer.Option([1, 5, 10, 20, 50], "--clients", help="Client counts to run (repeatable)."),
    chunks_ms: List[int] = typer.Option([640, 320], "--chunk-ms", help="Chunk sizes (repeatable)."),
    seconds: float = typer.Option(30.0, help="Audio each client streams at real time."),
    max_streams: int = typer.Option(0, help="The server's limit (0: as many as the clients, to measure beyond it)."),
    threads: int = typer.Option(1, help="CPU threads for torch in the server (per decoding thread)."),
    workers: int = typer.Option(DECODE_WORKERS, help="The server's decoding threads."),
    commit_thread: Optional[bool] = typer.Option(None, "--commit-thread/--no-commit-thread", help="Second passes on a thread of their own, so partials never wait for a commit (default: when a final model such as Whisper's decoder commits each segment from its audio; docs/serving.md)."),
    vad: bool = typer.Option(True, help="The silero-vad gate on every stream (as `asr live`)."),
    punctuate: bool = typer.Option(True, help="Committed captions punctuated (as `asr live`)."),
) -> None:
    """Serving capacity: the caption server and N loopback clients streaming at real time; per run partial and
    commit latency (median, p90), commits delivered and how many without a second pass (light), queued audio, server
    CPU and RSS; then the largest N whose p90 partial latency stayed under 1 s with at most 10% light commits. Prints
    one JSON line per run and a summary line."""
    import torch

    from asr.apps.serve_bench import serve_load, summarize
    from asr.inference.punctuate import cached_punctuator
    from asr.inference.streaming import StreamingOptions, live_recognizer

    torch.set_num_threads(threads)
    loaded = load(model)
    rows = []
    for c in chunks_ms:
        rec = _run(live_recognizer, loaded, StreamingOptions(chunk_ms=c, vad=vad, background_commits=commit_thread),
                   punctuator=_run(cached_punctuator) if punctuate else None)
        for n in clients:
            row = _run(serve_load, rec, audio, n, seconds, max_streams or None, workers=workers)
            rows.append(row)
            typer.echo(json.dumps(row))
    typer.echo(json.dumps(summarize(rows)))



def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except user_errors() as e:  # a user error a command did not wrap: still one line, never a traceback
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
