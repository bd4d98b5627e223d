"""``petseg demo``: a local Gradio app to segment a pet by clicking on it (SAM 2) or with a full-image model.

The UI is thin: every event calls a method of :class:`DemoController`, which works on a
:class:`~petseg.demo.session.PromptSession` (one per browser tab, kept in ``gr.State``) and returns the new
picture, a status message and a JSON summary. Bad input never raises out of a handler: it becomes a message
and the app stays up. Nothing is fetched from the internet (Gradio's default theme ships its fonts; analytics
are switched off before Gradio is imported).

API endpoints (for ``gradio_client``): ``/upload`` (file, model), ``/click`` (x, y, mode, label mode, model),
``/reset``, ``/set_model`` (model). A click in the browser goes through the same code as ``/click``.
"""

import contextlib
import io
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
import gradio as gr  # noqa: E402

from petseg.demo.models import ModelOption
from petseg.demo.overlay import render
from petseg.demo.session import BACKGROUND, DemoInputError, PromptSession, load_upload

DEFAULT_HOST = "127.0.0.1"
MAX_FILE_SIZE = "25mb"
MODES = ("point", "box")


@dataclass
class _SessionLock:
    """One session's lock and how many requests hold or await it (the entry goes when none do)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    holders: int = 0


@dataclass
class Reply:
    """What every handler returns: the picture (None before an image), a Markdown message, a summary."""

    picture: np.ndarray | None
    message: str
    details: dict[str, Any]


class DemoController:
    """The app's behaviour, independent of Gradio: model choice, uploads, clicks, reset."""

    def __init__(self, options: list[ModelOption]):
        if not options:
            raise ValueError("the demo needs at least one model option")
        self.options = {option.key: option for option in options}
        self.default_key = options[0].key
        self._load_lock = threading.Lock()
        # Prompt events skip Gradio's queue (browser) or run without a concurrency limit (API clients): a lock
        # per session keeps one user's clicks from interleaving while different users run side by side (they
        # only wait for each other on the model call, which the engine guards). An entry lives while a
        # request of its session holds or awaits it: the table never holds more than the requests in flight.
        self._session_locks: dict[str, _SessionLock] = {}
        self._session_locks_guard = threading.Lock()

    @contextlib.contextmanager
    def session_lock(self, session: PromptSession | None) -> Iterator[None]:
        """Hold ``session``'s own lock (by its ``uid``) for the block: its requests run one at a time, other
        sessions' do not wait. No session (a fresh one is made by the handler) needs no lock."""
        if session is None:
            yield
            return
        with self._session_locks_guard:
            entry = self._session_locks.get(session.uid)
            if entry is None:
                entry = self._session_locks[session.uid] = _SessionLock()
            entry.holders += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._session_locks_guard:
                entry.holders -= 1
                if not entry.holders:
                    del self._session_locks[session.uid]

    def option(self, key: str | None) -> ModelOption:
        if key not in self.options:
            raise DemoInputError(f"unknown model {key!r}; choose one of: {', '.join(self.options)}")
        return self.options[key]

    def engine(self, key: str) -> Any:
        """The loaded engine of model ``key`` (loaded on first use, then kept); a model that cannot be loaded
        (a checkpoint gone or broken since start-up) is a DemoInputError naming it."""
        option = self.option(key)
        with self._load_lock:
            if option.loaded is None:
                try:
                    option.loaded = option.load()
                except (OSError, ValueError, RuntimeError) as error:
                    raise DemoInputError(f"cannot load the model {option.label}: {error}") from error
            return option.loaded

    def _reply(self, session: PromptSession, key: str | None, message: str, **extra: Any) -> Reply:
        option = self.options.get(key) if key else None
        details = {**session.summary(), "model": option.label if option else None,
                   "random_weights": bool(option and option.random_weights), **extra}
        if option and option.random_weights:
            message += "\n\n*Model: SAM 2 with random weights (no trained checkpoint): the mask is meaningless.*"
        return Reply(render(session), message, details)

    def _error(self, session: PromptSession, key: str | None, error: Exception) -> Reply:
        return self._reply(session, key, f"**Not done:** {error}", error=str(error))

    def _apply_model(self, session: PromptSession, key: str) -> dict[str, Any]:
        """Embed (SAM 2) or segment (full-image model) the session's image; return timings."""
        image = session.require_image()
        engine = self.engine(key)
        if engine.kind == "prompted":
            timing = engine.embed(image, session.key)
            return {"embedding_seconds": round(timing.seconds, 4), "embedding_cached": timing.cached}
        session.labels, timing = engine.segment(image, session.key)
        return {"segment_seconds": round(timing.seconds, 4), "segment_cached": timing.cached}

    def upload(self, path: str | None, key: str | None, session: PromptSession | None) -> tuple[Reply, PromptSession]:
        """A new image: decode, check, downscale if huge, then embed or segment it."""
        with self.session_lock(session):
            return self._upload(path, key, session)

    def _upload(self, path: str | None, key: str | None, session: PromptSession | None) -> tuple[Reply, PromptSession]:
        session = session or PromptSession()
        key = key or self.default_key
        try:
            self.option(key)
            if not path:
                raise DemoInputError("no file received; choose an image file (JPEG, PNG, ...)")
            image, notes = load_upload(path)
            session.set_image(image, notes)
            timings = self._apply_model(session, key)
        except DemoInputError as error:
            return self._error(session, key, error), session
        height, width = session.image.shape[:2]
        what = ("Click on the pet (point mode) or click two opposite corners (box mode)."
                if self.option(key).kind == "prompted" else "Segmented with a full-image model (no prompts needed).")
        notes_text = f" Note: {'; '.join(session.notes)}." if session.notes else ""
        return self._reply(session, key, f"Image {width}x{height} loaded.{notes_text} {what}", **timings), session

    def click(self, x: float, y: float, mode: str, label_mode: str, key: str | None,
              session: PromptSession | None) -> tuple[Reply, PromptSession]:
        """A click at image pixel (x, y): a point prompt or a box corner, then a new mask."""
        with self.session_lock(session):
            return self._click(x, y, mode, label_mode, key, session)

    def _click(self, x: float, y: float, mode: str, label_mode: str, key: str | None,
               session: PromptSession | None) -> tuple[Reply, PromptSession]:
        session = session or PromptSession()
        key = key or self.default_key
        try:
            image = session.require_image()
            engine = self.engine(self.option(key).key)
            if engine.kind != "prompted":
                return self._reply(session, key, "This model segments the whole image; clicks are only used by "
                                                 "SAM 2 (choose it in the model list)."), session
            if mode not in MODES:
                raise DemoInputError(f"mode must be one of {MODES}, got {mode!r}")
            if mode == "point":
                label = session.add_point(x, y, label_mode)
                what = f"{'background' if label == BACKGROUND else 'foreground'} point at {session.points[-1]}"
            else:
                box = session.add_box_corner(x, y)
                if box is None:
                    corner = session.pending_corner
                    return self._reply(session, key, f"First corner at {corner}: click the opposite corner."), session
                what = f"box {box}"
            start = time.perf_counter()
            session.mask, timing = engine.predict(image, session.key, session.points, session.point_labels,
                                                  session.box)
            total = time.perf_counter() - start
        except DemoInputError as error:
            return self._error(session, key, error), session
        summary = session.summary()
        colour = f" The box is {summary['box_colour']}." if mode == "box" else ""
        message = (f"Added a {what}: the mask covers {summary['mask_pixels']} pixels "
                   f"({1000 * timing.seconds:.0f} ms).{colour}")
        return self._reply(session, key, message, predict_seconds=round(timing.seconds, 4),
                           click_seconds=round(total, 4)), session

    def reset(self, key: str | None, session: PromptSession | None) -> tuple[Reply, PromptSession]:
        """Clear every prompt (and the mask); the image and its embedding stay."""
        with self.session_lock(session):
            return self._reset(key, session)

    def _reset(self, key: str | None, session: PromptSession | None) -> tuple[Reply, PromptSession]:
        session = session or PromptSession()
        key = key or self.default_key
        session.reset()
        if session.image is None:
            return self._reply(session, key, "Nothing to reset: upload an image first."), session
        try:
            self._apply_model(session, key)
        except DemoInputError as error:
            return self._error(session, key, error), session
        return self._reply(session, key, "Prompts cleared."), session

    def set_model(self, key: str | None, session: PromptSession | None) -> tuple[Reply, PromptSession]:
        """Switch model: prompts are cleared; the current image is embedded or segmented again."""
        with self.session_lock(session):
            return self._set_model(key, session)

    def _set_model(self, key: str | None, session: PromptSession | None) -> tuple[Reply, PromptSession]:
        session = session or PromptSession()
        try:
            option = self.option(key)
            session.reset()
            if session.image is None:
                return self._reply(session, key, f"Model: {option.label}. Upload an image."), session
            timings = self._apply_model(session, key)
        except DemoInputError as error:
            return self._error(session, key, error), session
        return self._reply(session, key, f"Model: {option.label}.", **timings), session


@contextlib.contextmanager
def _refused_quietly() -> Iterator[None]:
    """Gradio refuses a value outside a component's choices with a ``gr.Error`` that it also prints as a
    traceback in the server's log: the caller still gets the error; the log gets one line."""
    try:
        yield
    except gr.Error as error:
        print(f"petseg demo: refused a request: {error.message}", file=sys.stderr)
        raise gr.Error(error.message, print_exception=False) from None


def refusing_quietly(component: Any) -> Any:
    """``component`` (a Dropdown or Radio) with refusals of values outside its choices logged as one line
    (:func:`_refused_quietly`). An instance is wrapped, not subclassed: Gradio writes a ``.pyi`` stub beside
    the module of every Component subclass."""
    preprocess = component.preprocess

    def quiet_preprocess(payload: Any) -> Any:
        with _refused_quietly():
            return preprocess(payload)

    component.preprocess = quiet_preprocess
    return component


def build_app(options: list[ModelOption]) -> Any:
    """The Gradio Blocks app over a :class:`DemoController` for ``options`` (first = default)."""
    controller = DemoController(options)
    choices = [(option.label, option.key) for option in options]

    def outputs(reply: Reply, session: PromptSession) -> tuple:
        return reply.picture, reply.message, reply.details, session

    def on_upload(path, key, session):
        return outputs(*controller.upload(path, key, session))

    def on_click(x, y, mode, label_mode, key, session):
        return outputs(*controller.click(x, y, mode, label_mode, key, session))

    def on_select(mode, label_mode, key, session, event: gr.SelectData):
        x, y = event.index if isinstance(event.index, list | tuple) else (None, None)
        return outputs(*controller.click(x, y, mode, label_mode, key, session))

    def on_reset(key, session):
        return outputs(*controller.reset(key, session))

    def on_model(key, session):
        reply, session = controller.set_model(key, session)
        return (*outputs(reply, session), controller.options[key].description if key in controller.options else "")

    def new_session() -> PromptSession:
        return PromptSession()

    def on_mode(session):
        session.pending_corner = None  # a half-made box does not survive a mode switch
        return session

    with gr.Blocks(title="petseg: click to segment a pet") as app:
        gr.Markdown("## petseg demo: segment a pet\nUpload a photo, then click on the pet. Point mode: each click "
                    "is a prompt; with *auto* labels a click on what the mask already covers removes it "
                    "(background), elsewhere it adds (foreground). Box mode: two clicks are opposite corners; the "
                    "box turns green when it holds pet pixels, blue when not. Runs locally; nothing leaves "
                    "this machine.")
        session = gr.State(new_session)  # called per browser session: each its own uid (a copied value shares one)
        with gr.Row():
            with gr.Column(scale=1):
                model = refusing_quietly(gr.Dropdown(choices=choices, value=options[0].key, label="Model"))
                model_note = gr.Markdown(options[0].description, elem_id="model-note")
                upload = gr.File(label="Upload an image", file_types=["image"], type="filepath",
                                 elem_id="upload")
                mode = gr.Radio(choices=[("point", "point"), ("box (two clicks)", "box")], value="point",
                                label="Prompt mode", elem_id="mode")
                label_mode = gr.Radio(choices=[("auto (from the mask around the click)", "auto"),
                                               ("foreground", "foreground"), ("background", "background")],
                                      value="auto", label="Point label", elem_id="label-mode")
                for choice in (mode, label_mode):
                    refusing_quietly(choice)
                reset = gr.Button("Reset prompts", elem_id="reset")
            with gr.Column(scale=2):
                canvas = gr.Image(label="Click on the image", interactive=False, format="jpeg", elem_id="canvas")
                status = gr.Markdown("Upload an image to start.", elem_id="status")
                details = gr.JSON(label="Prompts and timings", elem_id="details")
        # API-only inputs: /click takes image pixel coordinates as numbers
        click_x = gr.Number(visible=False)
        click_y = gr.Number(visible=False)
        click_button = gr.Button(visible=False)

        shown = [canvas, status, details, session]
        upload.upload(on_upload, [upload, model, session], shown, api_name="upload")
        # prompts are fast: the browser sends them past the queue (a direct request, less overhead per click);
        # API clients (gradio_client) always go through the queue, where concurrency_limit=None keeps one
        # user's click from waiting for another's (the controller serialises each session on its own)
        prompt = {"queue": False, "concurrency_limit": None}
        canvas.select(on_select, [mode, label_mode, model, session], shown, api_name=False, **prompt)
        click_button.click(on_click, [click_x, click_y, mode, label_mode, model, session], shown, api_name="click",
                           **prompt)
        reset.click(on_reset, [model, session], shown, api_name="reset", **prompt)
        model.change(on_model, [model, session], [*shown, model_note], api_name="set_model")
        mode.change(on_mode, session, session, api_name=False)
    app.queue()  # uploads and model switches (embedding, seconds) wait their turn
    return app


def launch(options: list[ModelOption], host: str = DEFAULT_HOST, port: int | None = None,
           block: bool = True) -> Any:
    """Build and serve the app on ``host:port`` (127.0.0.1 unless told otherwise); returns the Blocks."""
    # gradio's queue uses pandas options that pandas 3 deprecates: not ours to fix, and noise in the book
    warnings.filterwarnings("ignore", module="gradio.queueing")
    app = build_app(options)
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, inline=False, show_error=True,
               max_file_size=MAX_FILE_SIZE, prevent_thread_lock=not block, quiet=not block)
    return app


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def serve_in_background(options: list[ModelOption], host: str = DEFAULT_HOST, port: int | None = None,
                        timeout: float = 60) -> tuple[Any, str]:
    """Start the app in this process on a free port (unless ``port``) and return it with its URL; call
    ``app.close()`` to stop it."""
    app = launch(options, host=host, port=port or free_port(host), block=False)
    deadline = time.monotonic() + timeout
    while not getattr(app, "local_url", None):
        if time.monotonic() > deadline:
            app.close()
            raise TimeoutError(f"the demo did not start within {timeout} s")
        time.sleep(0.1)
    return app, app.local_url


@contextlib.contextmanager
def serve_subprocess(*cli_args: str, host: str = DEFAULT_HOST, timeout: float = 180) -> Iterator[str]:
    """Run ``petseg demo <cli_args>`` in a child process on a free port; yield its URL once it answers, stop
    it on exit. Keeps Gradio's side effects (its output, its matplotlib backend switching) out of the caller,
    e.g. a notebook kernel. RuntimeError with the end of the child's log if it does not come up."""
    import subprocess
    import sys
    import tempfile
    import urllib.request

    port = free_port(host)
    url = f"http://{host}:{port}/"
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen([sys.executable, "-m", "petseg.cli", "demo", "--host", host, "--port", str(port),
                                  *cli_args], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        break
                except OSError:
                    if child.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        tail = "\n".join(log.read().splitlines()[-5:])
                        raise RuntimeError(f"petseg demo did not start (exit code {child.poll()}): {tail}") from None
                    time.sleep(0.3)
            yield url
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def close_quietly(app: Any) -> None:
    """Stop a background app without Gradio's "Closing server" line (keeps the book's output clean)."""
    with contextlib.redirect_stdout(io.StringIO()):
        app.close()


def main(sam2: str | Path | None = None, runs_dir: str | Path | None = None, host: str = DEFAULT_HOST,
         port: int | None = None, device: str = "cpu", random_image_size: int = 1024,
         profile: str | None = None) -> int:
    """``petseg demo``: find the models, load the default one (so a bad ``--sam2`` fails now, in one line),
    print what was found, serve until interrupted."""
    import sys

    from petseg.demo.models import demo_options

    try:
        options = demo_options(sam2, runs_dir, device=device, random_image_size=random_image_size, profile=profile)
        DemoController(options).engine(options[0].key)  # the app's controller reuses the loaded engine
    except (OSError, ValueError, RuntimeError) as error:  # DemoInputError is a ValueError
        print(f"petseg demo: {error}", file=sys.stderr)
        return 1
    for option in options:
        print(f"model: {option.label}" + ("  [random weights]" if option.random_weights else ""))
    if host not in (DEFAULT_HOST, "localhost"):
        print(f"note: serving on {host}, reachable from other machines")
    print(f"serving on http://{host}:{port or 7860} (Ctrl+C to stop)", flush=True)
    launch(options, host=host, port=port, block=True)
    return 0
