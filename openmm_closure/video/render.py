"""A polymer replica as a video (the library behind ``openmm-closure render``).

``openmm-closure render DATASET --replica 0 --out chain.gif`` writes the rendered frames
of one replica as a video (``.gif`` with Pillow alone; ``.mp4``/``.avi``/``.mkv``/``.webm``
with the optional ``video`` extra, imageio + imageio-ffmpeg). With ``--model`` the
model's predicted extension (mean ± std over ``--samples`` rollouts from frame 0) is
drawn beside the frames, with the simulated extension and a cursor at the current frame.
``--pixels DIR`` (or ``--pixels`` alone: ``DATASET-pixels``) writes the pixel-set dataset
the trainer reads (:func:`openmm_closure.video.pixel_dataset.render_dataset`).

Example:
    $ openmm-closure render runs/polymer-test-fast --replica 0 --out chain.gif
    $ openmm-closure render runs/polymer --pixels
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["write_video", "video_encoder", "predicted_extension", "render_video", "particle_render_config"]

_PILLOW = (".gif",)
_FFMPEG = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def video_encoder(path: str | os.PathLike) -> str:
    """The encoder for a video path: ``"pillow"`` (.gif) or ``"ffmpeg"``.

    Raises:
        ValueError: an extension no supported encoder writes.
        ImportError: an ffmpeg format without imageio / imageio-ffmpeg installed.
    """
    suffix = Path(path).suffix.lower()
    if suffix in _PILLOW:
        return "pillow"
    if suffix in _FFMPEG:
        try:
            import imageio  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ImportError(f"writing {suffix} needs imageio and imageio-ffmpeg: "
                              "pip install 'openmm-closure[video]', or write a .gif") from None
        return "ffmpeg"
    raise ValueError(f"no video encoder writes {suffix or 'a path without extension'!r}; "
                     f"use one of {', '.join(_PILLOW + _FFMPEG)}")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 10.0) -> Path:
    """Write RGB frames to a video file.

    Arguments:
        path: ``.gif`` (Pillow) or an ffmpeg format (``.mp4``, ...).
        frames: (F, H, W, 3) uint8 RGB frames.
        fps: frames per second.

    Returns:
        The path written.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    encoder = video_encoder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoder == "pillow":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    else:
        import imageio.v2 as imageio

        # even sizes for the yuv420p pixel format most players need
        h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
        with imageio.get_writer(str(path), fps=fps, macro_block_size=1) as writer:
            for f in frames:
                writer.append_data(f[:h, :w])
    return path


def predicted_extension(model_dir: str | os.PathLike, positions0: np.ndarray, steps: int, dt: float,
                        samples: int = 32, seed: int = 0) -> np.ndarray:
    """Extension rollouts of a model from one polymer frame.

    Arguments:
        model_dir: a model trained on a polymer dataset (positions or pixel sets).
        positions0: (n, 3) bead positions in nm of the first frame.
        steps: frames to predict after the first.
        dt: frame spacing in ps.
        samples: rollouts (SDE models; ODE models give one).

    Returns:
        (S, steps + 1) predicted extension in nm.
    """
    from ..learn.model import load_model

    model = load_model(model_dir)
    manifest = model.config.get("manifest", {})
    if model.config.get("system") != "polymer" or "extension" not in list(model.observables):
        raise ValueError(f"model {model_dir} does not predict a polymer's extension")
    import torch

    pos = np.asarray(positions0, dtype=np.float64)
    if manifest.get("representation") == "pixels":
        from .frames import RenderConfig, brightest_pixels, render_frame

        # z̄ from the beads (the extension), ẑ from the rendered frame's pixel set
        cfg = RenderConfig.from_dict(manifest["render"])
        px = brightest_pixels(render_frame(pos, cfg), cfg.n_pixels)
        zbar = torch.as_tensor(model.macro(pos, np.zeros(len(pos), dtype=np.int64)), dtype=torch.float64)
        zhat = torch.as_tensor(model.encode(px, np.zeros(len(px), dtype=np.int64)), dtype=torch.float64)
        z0 = model.scale(torch.cat([zbar, zhat])).double().reshape(1, -1)
    else:
        z0 = model.state(pos, np.zeros(len(pos), dtype=np.int64)).double().reshape(1, -1)
    k = samples if getattr(model.dynamics, "stochastic", False) else 1
    traj = model.rollout(torch.as_tensor(np.repeat(z0.cpu().numpy(), k, axis=0)), steps, dt=dt, seed=seed)
    j = list(model.observables).index("extension")
    return model.unscale(traj).cpu().numpy()[..., j]


def particle_render_config(positions: np.ndarray, scale: float = 1.0, margin: float = 1.2):
    """A view that holds every frame of any 2D or 3D particle set (a dataset of your own
    system): the field of view covers the largest extent about each frame's centroid.

    Arguments:
        positions: (F, n, 3) positions in nm.
        scale: image size relative to the reference's 100 x 500 px.
        margin: field of view / largest extent.

    Returns:
        A :class:`~openmm_closure.video.frames.RenderConfig`.
    """
    from .frames import REFERENCE_SHAPE, RenderConfig

    p = np.asarray(positions, dtype=np.float64)
    d = np.abs(p - p.mean(axis=-2, keepdims=True))
    aspect = REFERENCE_SHAPE[1] / REFERENCE_SHAPE[0]
    fov = margin * 2.0 * max(float(d[..., 0].max()), float(d[..., 1].max()) * aspect, 1e-3)
    return RenderConfig(scale=scale, fov=fov)


def render_video(dataset: str | os.PathLike, replica: int, out: str | os.PathLike, model: Optional[str] = None,
                 scale: float = 1.0, fps: float = 10.0, samples: int = 32, every: int = 1,
                 overwrite: bool = False) -> Path:
    """Render one replica of a dataset as a video (see the module docstring): a polymer's
    chain, or any 2D or 3D particle set (depth drawn as blur; :func:`particle_render_config`).

    Arguments:
        dataset: trajectory dataset directory (a polymer's, or any other).
        replica: replica index.
        out: video path (.gif, .mp4, ...).
        model: optional model directory; its predicted extension band is drawn beside.
        scale: image size relative to the reference's 100 x 500 px.
        fps: frames per second.
        samples: rollouts for the predicted band.
        every: use every k-th frame.
        overwrite: replace an existing ``out`` (default: refuse with FileExistsError).

    Returns:
        The video path.
    """
    from ..data import load, read_manifest
    from .pixel_dataset import check_polymer_manifest, default_render_config
    from .frames import render_frames

    video_encoder(out)  # fail before any work on an unsupported path
    if os.path.lexists(out) and not overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite (overwrite=True) to replace it, "
                              "or choose another --out")
    manifest = read_manifest(dataset)
    polymer = manifest.get("system") == "polymer"
    if polymer or manifest.get("representation") == "pixels":
        check_polymer_manifest(manifest, str(dataset))
    elif model is not None:
        raise ValueError(f"--model draws a polymer model's predicted extension; {dataset} holds a "
                         f"{manifest.get('system')!r} dataset: render it without --model")
    ds = load(dataset)
    if not 0 <= replica < len(ds):
        raise ValueError(f"--replica {replica} out of range: {dataset} has {len(ds)} replicas")
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    r = ds.replica(replica)
    cfg = default_render_config(manifest, scale=scale, n_pixels=1) if polymer \
        else particle_render_config(r.positions, scale=scale)
    images = render_frames(r.positions[::every], cfg)
    times = r.times - r.times[0]
    ext = r.observables.get("extension")
    band = None
    if model is not None:
        band = predicted_extension(model, r.positions[0], len(times) - 1, float(times[1] - times[0]), samples)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = cfg.shape
    rgb = []
    fig_w = 8.0 if ext is None else 12.0
    fig = plt.figure(figsize=(fig_w, max(2.4, 8.0 * h / w + 0.8)), dpi=100)
    for f, img in zip(range(0, len(times), every), images):
        fig.clf()
        ax = fig.add_axes([0.02, 0.12, 0.62 if ext is not None else 0.96, 0.78])
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"replica {replica}, t = {times[f]:.1f} ps", fontsize=9)
        if ext is not None:
            bx = fig.add_axes([0.72, 0.2, 0.26, 0.68])
            bx.plot(times, ext, color="k", lw=1, label="simulated")
            if band is not None:
                mu, sd = band.mean(0), band.std(0)
                bx.plot(times, mu, color="C1", lw=1, label="predicted mean")
                bx.fill_between(times, mu - sd, mu + sd, color="C1", alpha=0.3, lw=0, label="± std")
            bx.axvline(times[f], color="C0", lw=1)
            bx.set_xlabel("time (ps)", fontsize=8)
            bx.set_ylabel("extension (nm)", fontsize=8)
            bx.tick_params(labelsize=7)
            bx.legend(fontsize=6, loc="upper left")
        fig.canvas.draw()
        rgb.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return write_video(out, np.stack(rgb), fps=fps)
