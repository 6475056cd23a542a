"""Rendering polymer frames to images and pixel sets, and writing videos."""

import numpy as np
import pytest

from openmm_closure.systems.polymer import growth_walk
from openmm_closure.video.frames import (
    RenderConfig,
    brightest_pixels,
    image_to_pixels,
    pixels_to_image,
    render_frame,
    render_frames,
)


@pytest.fixture(scope="module")
def chain():
    return growth_walk(32, np.random.default_rng(3))


@pytest.fixture(scope="module")
def cfg():
    return RenderConfig.for_chain(32, scale=0.3)


def test_image_size_follows_the_reference_aspect(cfg):
    assert cfg.shape == (30, 150)
    assert RenderConfig.for_chain(300, scale=1.0).shape == (100, 500)
    assert RenderConfig.for_chain(300, scale=1.0).px_per_nm * 0.97 > 1.0


def test_rendering_is_bitwise_invariant_to_bead_order(chain, cfg):
    ref = render_frame(chain, cfg)
    rng = np.random.default_rng(0)
    for _ in range(10):
        perm = rng.permutation(len(chain))
        assert np.array_equal(render_frame(chain[perm], cfg), ref)
    # and so are the fixed-size pixel sets built from it
    assert np.array_equal(brightest_pixels(render_frame(chain[::-1], cfg), 64), brightest_pixels(ref, 64))


def test_render_draws_one_blob_per_bead_at_the_right_place(cfg):
    # two beads at the mean depth, 10 nm apart along x, 1 nm apart in y
    p = np.array([[-5.0, 0.5, 0.0], [5.0, -0.5, 0.0]])
    img = render_frame(p, cfg)
    # independent evaluation: sigma = 1 px, centre of the view at (W/2, H/2), y up
    s = cfg.px_per_nm
    rows, cols = np.mgrid[0:cfg.height, 0:cfg.width] + 0.5
    blobs = [np.exp(-0.5 * ((cols - (x * s + cfg.width / 2)) ** 2 + (rows - (cfg.height / 2 - y * s)) ** 2))
             for x, y, _ in p]
    expected = np.maximum(*blobs)
    expected[expected < np.exp(-4.5)] = 0.0  # blobs end at 3 sigma
    np.testing.assert_allclose(img, expected, atol=1e-12)
    assert 0.0 <= img.min() and img.max() <= 1.0


def test_depth_widens_the_blob(cfg):
    flat = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]])
    deep = np.array([[0.0, 0.0, -10.0], [0.0, 0.0, 10.0]])
    # sigma = max(|z - z_mean| px / 5, 1): 10 nm off the mean depth is ~5.8 px wide, 1 nm 1 px
    assert (render_frame(deep, cfg) > 0.1).sum() > 4 * (render_frame(flat, cfg) > 0.1).sum()


def test_pixel_sets_round_trip_to_the_image(chain, cfg):
    img = render_frame(chain, cfg)
    px = image_to_pixels(img)
    assert px.shape[1] == 3 and np.all(np.abs(px) <= 1.0)
    assert len(px) == np.count_nonzero(img)
    back = pixels_to_image(px, img.shape)
    np.testing.assert_allclose(back, img, rtol=0, atol=1e-15)
    assert np.array_equal(back > 0, img > 0)
    # the K brightest pixels with K >= lit pixels hold the whole image too
    k = len(px) + 5
    back_k = pixels_to_image(brightest_pixels(img, k), img.shape)
    np.testing.assert_allclose(back_k, img, rtol=0, atol=1e-15)


def test_brightest_pixels_keep_the_brightest(chain, cfg):
    img = render_frame(chain, cfg)
    px = brightest_pixels(img, 50)
    assert px.shape == (50, 3)
    kept = np.sort((px[:, 2] + 1) / 2)
    np.testing.assert_allclose(kept, np.sort(img.ravel())[-50:], atol=1e-15)


def test_render_frames_stacks(chain, cfg):
    imgs = render_frames(np.stack([chain, chain + 1.0]), cfg)
    assert imgs.shape == (2, 30, 150)
    np.testing.assert_allclose(imgs[0], imgs[1], atol=1e-12)  # centred on the chain: translation invariant


def test_image_that_cannot_hold_the_chain_is_refused():
    with pytest.raises(ValueError, match="cannot hold a 300-bead chain"):
        RenderConfig.for_chain(300, scale=0.5)


def test_chain_outside_the_field_of_view_is_refused(cfg):
    p = np.zeros((4, 3))
    p[0, 0] = 100.0
    with pytest.raises(ValueError, match="outside the .* field of view"):
        render_frame(p, cfg)


def test_bad_render_parameters():
    with pytest.raises(ValueError, match="n_pixels"):
        RenderConfig(scale=0.02, fov=10.0, n_pixels=100)
    with pytest.raises(ValueError, match="scale"):
        RenderConfig(scale=0.0)
    with pytest.raises(ValueError, match="NaN"):
        render_frame(np.full((3, 3), np.nan), RenderConfig())


def test_gif_is_written_and_read_back(tmp_path):
    from PIL import Image

    from openmm_closure.video.render import write_video

    frames = np.zeros((3, 10, 12, 3), dtype=np.uint8)
    frames[1, 2:5, 3:7] = 255
    path = write_video(tmp_path / "c.gif", frames, fps=5)
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size == (12, 10)
        im.seek(1)
        assert np.asarray(im.convert("L"))[3, 4] == 255


def test_mp4_when_ffmpeg_is_installed(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as imageio

    from openmm_closure.video.render import write_video

    frames = np.full((4, 16, 16, 3), 128, dtype=np.uint8)
    path = write_video(tmp_path / "c.mp4", frames, fps=4)
    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        back = [f for f in reader]
    assert len(back) == 4 and back[0].shape == (16, 16, 3)
    assert abs(float(back[0].mean()) - 128) < 3  # lossy codec, flat grey survives


def test_video_path_without_an_encoder_is_refused(tmp_path):
    from openmm_closure.video.render import video_encoder, write_video

    with pytest.raises(ValueError, match="no video encoder writes '.xyz'"):
        video_encoder(tmp_path / "c.xyz")
    with pytest.raises(ValueError, match="no video encoder"):
        write_video(tmp_path / "c", np.zeros((1, 2, 2, 3), np.uint8))
