"""The Gradio Blocks page over :class:`~voiceconv.app.service.AppService`.

Tabs: Convert, Train, Evaluate, Runs. Every event that does work has an
``api_name`` (``/convert``, ``/convert_many``, ``/train``, ``/stop``, ``/resume``,
``/progress``, ``/evaluate``, ``/runs``), so ``gradio_client`` can do what the page
does. User mistakes become ``gr.Error`` messages (a toast in the page, an
``AppError`` for clients) and the app keeps serving. Conversions share one
concurrency slot, so simultaneous requests queue instead of failing; training
requests get their own slot-free queue so that a second one is told "one at a time"
at once, and Stop is never queued behind the training it stops.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from voiceconv.app.runs import ROW_HEADERS
from voiceconv.app.service import GRIFFIN_LIM, MODELS, AppService
from voiceconv.errors import VoiceconvError

POLL_S = 1.0


def _table(service: AppService) -> list[list[Any]]:
    rows = [r.row() for r in service.runs()]
    return rows or [["(no trained runs yet: train one in the Train tab)", "", "", "", "", ""]]


def build_blocks(service: AppService) -> Any:
    """The page (a ``gr.Blocks``); launch it with :func:`voiceconv.app.server.launch`."""
    import gradio as gr
    import pandas as pd

    def fail(err: Exception) -> gr.Error:
        return gr.Error(str(err), print_exception=False)

    def run_names() -> list[str]:
        return [r.name for r in service.runs()]

    def choose_run(current: str | None, names: list[str]) -> str | None:
        return current if current in names else (names[0] if names else None)

    # ------------------------------------------------------------ handlers
    def refresh(run: str | None, resume_run: str | None, eval_run: str | None):
        names = run_names()
        run, resume_run, eval_run = (choose_run(x, names) for x in (run, resume_run, eval_run))
        return (
            _table(service),
            gr.Dropdown(choices=names, value=run),
            gr.Dropdown(choices=service.direction_choices(run), value="a2b"),
            gr.Dropdown(choices=service.vocoder_choices(run), value=GRIFFIN_LIM),
            gr.Dropdown(choices=names, value=resume_run),
            gr.Dropdown(choices=names, value=eval_run),
            gr.Dropdown(choices=service.direction_choices(eval_run), value="a2b"),
        )

    def on_run(run: str | None):
        return (gr.Dropdown(choices=service.direction_choices(run), value="a2b"),
                gr.Dropdown(choices=service.vocoder_choices(run), value=GRIFFIN_LIM))

    def on_eval_run(run: str | None):
        return gr.Dropdown(choices=service.direction_choices(run), value="a2b")

    def convert(audio: str | None, run: str, direction: str, vocoder: str):
        """Convert one audio file: (audio file, run, direction, vocoder) -> converted wav."""
        try:
            res = service.convert(audio, run, direction, vocoder)
        except VoiceconvError as err:
            raise fail(err) from None
        rt = res.input_seconds / max(res.seconds, 1e-9)
        info = (f"**{res.description}**: {res.input_seconds:.1f} s of speech converted in "
                f"**{res.seconds:.2f} s** ({rt:.1f}x real time), vocoder {vocoder or GRIFFIN_LIM}")
        details = {"input_mel": str(res.input_mel), "output_mel": str(res.output_mel),
                   "output": str(res.output), "info": info}
        return str(res.output), details

    def show_details(details: dict[str, str] | None):
        if not details:
            return None, None, None, ""
        return details["input_mel"], details["output_mel"], details["output"], details["info"]

    def convert_many(files: list[str] | None, run: str, direction: str, vocoder: str):
        """Convert several files; returns (zip of the converted wavs, one line per file)."""
        try:
            res = service.convert_many(files or [], run, direction, vocoder)
        except VoiceconvError as err:
            raise fail(err) from None
        head = f"{res.converted} converted, {res.failed} failed, in {res.seconds:.2f} s"
        body = "\n".join(f"- {line}" for line in res.lines)
        if res.zip_path is None:
            raise gr.Error(f"{head}\n{body}", print_exception=False)
        return str(res.zip_path), f"{head}\n\n{body}"

    def loss_frame(table: dict[str, list[Any]]) -> pd.DataFrame | None:
        # None until there is a point: a plot first given an empty frame never draws its
        # lines afterwards (Gradio 6.31)
        return pd.DataFrame(table) if table["step"] else None

    def progress_view():
        job = service.status()
        if job is None:
            return "No training yet.", None
        return job.summary(), loss_frame(job.loss_table())

    def follow(job: Any) -> Iterator[tuple[str, Any]]:
        while not job.done:
            yield progress_view()
            time.sleep(POLL_S)
        if job.state == "failed":
            raise gr.Error(f"training {job.run_name} failed: {job.message}", print_exception=False)
        yield progress_view()

    def train(run_name: str, a_dir: str, b_dir: str, a_files: list[str] | None, b_files: list[str] | None,
              speaker_a: str, speaker_b: str, model: str, steps: float, overrides: str):
        """Start a training and stream its progress until it finishes or is stopped."""
        try:
            job = service.start_training(run_name, a_dir, b_dir, a_files, b_files, speaker_a, speaker_b,
                                         model, int(steps), overrides)
        except VoiceconvError as err:
            raise fail(err) from None
        yield from follow(job)

    def resume(run: str, steps: float | None):
        """Resume a stopped (or finished) run up to ``steps`` (0: its configured steps)."""
        try:
            job = service.resume_training(run, int(steps) if steps else None)
        except VoiceconvError as err:
            raise fail(err) from None
        yield from follow(job)

    def stop():
        """Stop the running training: it writes a checkpoint at the current step and ends."""
        return service.stop_training(wait_s=0.0)

    def evaluate(run: str, direction: str, source_dir: str, reference_dir: str, classifier: bool):
        """Convert held-out source files and score them against parallel references."""
        try:
            res = service.evaluate(run, direction, source_dir, reference_dir, classifier=classifier)
        except VoiceconvError as err:
            raise fail(err) from None
        return res.markdown, [str(p) for p in res.plots]

    # ------------------------------------------------------------- layout
    names = run_names()
    first = names[0] if names else None
    with gr.Blocks(title="voiceconv") as demo:
        gr.Markdown("# voiceconv\nNon-parallel voice conversion (CycleGAN-VC2 / MaskCycleGAN-VC). "
                    f"Runs folder: `{service.runs_dir}`")
        with gr.Tab("Convert"):
            with gr.Row():
                run_dd = gr.Dropdown(names, value=first, label="Run", allow_custom_value=True,
                                     elem_id="run-dd")
                dir_dd = gr.Dropdown(service.direction_choices(first), value="a2b", label="Direction",
                                     elem_id="direction-dd")
                voc_dd = gr.Dropdown(service.vocoder_choices(first), value=GRIFFIN_LIM, label="Vocoder",
                                     allow_custom_value=True, elem_id="vocoder-dd")
            with gr.Row():
                audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Input speech",
                                    elem_id="audio-in")
                audio_out = gr.Audio(type="filepath", label="Converted", interactive=False,
                                     elem_id="audio-out")
            convert_btn = gr.Button("Convert", variant="primary", elem_id="convert-btn")
            info = gr.Markdown(elem_id="convert-info")
            with gr.Row():
                mel_in = gr.Image(label="Input log-mel", type="filepath", interactive=False, height=240,
                                  elem_id="mel-in")
                mel_out = gr.Image(label="Output log-mel", type="filepath", interactive=False, height=240,
                                   elem_id="mel-out")
            download = gr.File(label="Download the converted file", interactive=False, height=90)
            details = gr.State()
            with gr.Accordion("Several files at once (returned as a zip)", open=False):
                files_in = gr.File(file_count="multiple", file_types=["audio"], label="Audio files",
                                   type="filepath")
                many_btn = gr.Button("Convert all")
                zip_out = gr.File(label="converted.zip", interactive=False)
                many_info = gr.Markdown()
        with gr.Tab("Train"):
            with gr.Row():
                run_name = gr.Textbox(label="New run name", placeholder="rms_slt", elem_id="run-name")
                model_dd = gr.Dropdown(list(MODELS), value=MODELS[0], label="Model size")
                steps_in = gr.Number(value=1000, precision=0, minimum=1, label="Steps", elem_id="train-steps")
            with gr.Row():
                with gr.Column():
                    a_dir = gr.Textbox(label="Speaker A: folder on the server", elem_id="a-dir")
                    a_files = gr.File(file_count="multiple", file_types=["audio"], type="filepath",
                                      label="... or upload speaker A's recordings")
                    speaker_a = gr.Textbox(label="Speaker A name (default: the folder's name)")
                with gr.Column():
                    b_dir = gr.Textbox(label="Speaker B: folder on the server", elem_id="b-dir")
                    b_files = gr.File(file_count="multiple", file_types=["audio"], type="filepath",
                                      label="... or upload speaker B's recordings")
                    speaker_b = gr.Textbox(label="Speaker B name (default: the folder's name)")
            with gr.Accordion("Advanced: Hydra overrides, one per line", open=False):
                overrides = gr.Textbox(lines=3, label="e.g. trainer.batch_size=2, model.n_residual=3",
                                       elem_id="train-overrides")
            with gr.Row():
                train_btn = gr.Button("Train", variant="primary", elem_id="train-btn")
                stop_btn = gr.Button("Stop (writes a checkpoint)", variant="stop")
            with gr.Row():
                resume_dd = gr.Dropdown(names, value=first, label="Resume run", allow_custom_value=True)
                resume_steps = gr.Number(value=0, precision=0, minimum=0,
                                         label="Up to step (0: the run's configured steps)")
                resume_btn = gr.Button("Resume")
            progress = gr.Markdown("No training yet.", elem_id="train-progress")
            loss_plot = gr.LinePlot(None, x="step", y="value", color="loss", title="Losses",
                                    height=260, elem_id="loss-plot")
        with gr.Tab("Evaluate"):
            with gr.Row():
                eval_dd = gr.Dropdown(names, value=first, label="Run", allow_custom_value=True)
                eval_dir = gr.Dropdown(service.direction_choices(first), value="a2b", label="Direction")
                eval_clf = gr.Checkbox(value=True, label="Speaker classifier (trained on the run's cache)")
            with gr.Row():
                eval_src = gr.Textbox(label="Held-out source speaker folder (server)")
                eval_ref = gr.Textbox(label="Held-out target speaker folder, same file names (server)")
            eval_btn = gr.Button("Evaluate", variant="primary")
            report = gr.Markdown()
            plots = gr.Gallery(label="Plots", columns=1, height="auto")
        with gr.Tab("Runs"):
            table = gr.Dataframe(_table(service), headers=ROW_HEADERS, interactive=False, wrap=True)
            refresh_btn = gr.Button("Refresh")
        timer = gr.Timer(2.0)

        # -------------------------------------------------------------- events
        lists = [table, run_dd, dir_dd, voc_dd, resume_dd, eval_dd, eval_dir]
        refresh_btn.click(refresh, [run_dd, resume_dd, eval_dd], lists, api_name="runs")
        demo.load(refresh, [run_dd, resume_dd, eval_dd], lists, api_visibility="private")
        run_dd.change(on_run, run_dd, [dir_dd, voc_dd], api_visibility="private")
        eval_dd.change(on_eval_run, eval_dd, eval_dir, api_visibility="private")
        convert_btn.click(convert, [audio_in, run_dd, dir_dd, voc_dd], [audio_out, details],
                          api_name="convert", concurrency_id="convert", concurrency_limit=1).success(
            show_details, details, [mel_in, mel_out, download, info], api_visibility="private")
        many_btn.click(convert_many, [files_in, run_dd, dir_dd, voc_dd], [zip_out, many_info],
                       api_name="convert_many", concurrency_id="convert", concurrency_limit=1)
        train_btn.click(train, [run_name, a_dir, b_dir, a_files, b_files, speaker_a, speaker_b, model_dd,
                                steps_in, overrides], [progress, loss_plot], api_name="train",
                        concurrency_limit=None)
        stop_btn.click(stop, None, progress, api_name="stop", concurrency_limit=None)
        resume_btn.click(resume, [resume_dd, resume_steps], [progress, loss_plot], api_name="resume",
                         concurrency_limit=None)
        timer.tick(progress_view, None, [progress, loss_plot], api_name="progress", concurrency_limit=None,
                   show_progress="hidden")
        eval_btn.click(evaluate, [eval_dd, eval_dir, eval_src, eval_ref, eval_clf], [report, plots],
                       api_name="evaluate", concurrency_id="convert", concurrency_limit=1)
    return demo
