"""Data loaders against hand-made files and Fashion-MNIST's published facts."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from reference import idx_bytes as _idx

from subsetsearch.errors import InputError
from subsetsearch.train import data

FASHION = data.FASHION_MNIST_DIR.is_dir()


def test_read_idx_plain_and_gzip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx(array))
    (tmp_path / "b.gz").write_bytes(gzip.compress(_idx(array)))
    assert np.array_equal(data.read_idx(tmp_path / "a"), array)
    assert np.array_equal(data.read_idx(tmp_path / "b.gz"), array)
    (tmp_path / "c").write_bytes(_idx(array)[:-3])
    with pytest.raises(InputError, match="truncated"):
        data.read_idx(tmp_path / "c")
    (tmp_path / "d").write_bytes(b"\x01\x02\x03")
    with pytest.raises(InputError, match="not an IDX file"):
        data.read_idx(tmp_path / "d")


@pytest.mark.skipif(not FASHION, reason="Debian's dataset-fashion-mnist is not installed (make test installs it)")
def test_fashion_mnist_matches_its_published_facts():
    train, test = data.load_fashion_mnist()
    assert train.x.shape == (60_000, 1, 28, 28) and test.x.shape == (10_000, 1, 28, 28)
    assert train.x.dtype == np.uint8
    assert np.array_equal(np.bincount(train.y), np.full(10, 6000))
    assert np.array_equal(np.bincount(test.y), np.full(10, 1000))
    assert train.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # the dataset's first labels


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(InputError, match="dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path / "nowhere")
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path)  # exists but empty


def test_fashion_mnist_from_a_folder_of_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, 9, 9))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(n) % 3)))
    train, test = data.load_fashion_mnist(tmp_path)
    assert train.x.shape == (12, 1, 9, 9) and test.y.tolist() == [0, 1, 2, 0, 1]


def test_digits_are_scaled_to_bytes():
    digits = data.load_digits_images()
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.dtype == np.uint8
    assert digits.x.max() == 255 and digits.x.min() == 0
    assert np.array_equal(np.unique(digits.y), np.arange(10))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((5, 9, 10), (5, 1, 9, 10)), ((5, 9, 10, 3), (5, 3, 9, 10)), ((5, 3, 9, 10), (5, 3, 9, 10))],
)
def test_as_nchw_layouts(shape, expected):
    x = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    out = data.as_nchw(x, "x")
    assert out.shape == expected
    if len(shape) == 4 and shape[-1] == 3:
        assert np.array_equal(out[2, 1], x[2, :, :, 1])


def test_as_nchw_refuses_tiny_and_nan():
    with pytest.raises(InputError, match="at least 8×8"):
        data.as_nchw(np.zeros((3, 4, 4)), "x")
    bad = np.zeros((3, 8, 8), np.float32)
    bad[1, 2, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        data.as_nchw(bad, "x")


LAYOUTS = {  # the same three RGB images of 9×10 pixels, [image, channel, row, column] -> each layout
    "channels first": lambda a: a,
    "channels last": lambda a: a.transpose(0, 2, 3, 1),
}
DTYPES = {  # dtype -> (what it is stored as, what training reads)
    "uint8": (np.uint8, np.uint8),
    "uint16": (np.uint16, np.float32),
    "float16": (np.float16, np.float32),
    "float32": (np.float32, np.float32),
    "float64": (np.float64, np.float32),
}


@pytest.mark.parametrize("on_disk", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_arrays_of_every_layout_and_dtype_read_as_the_same_values(tmp_path, layout, dtype, on_disk):
    stored, read = DTYPES[dtype]
    values = np.arange(3 * 3 * 9 * 10).reshape(3, 3, 9, 10) % 250  # exact in every dtype listed
    np.save(tmp_path / "x.npy", LAYOUTS[layout](values).astype(stored))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0]))
    images = data.load_arrays(tmp_path / "x.npy", tmp_path / "y.npy", lazy=on_disk)
    x = images.x[np.arange(3)] if on_disk else images.x
    assert x.shape == (3, 3, 9, 10) and x.dtype == read
    np.testing.assert_array_equal(x, values.astype(read))  # values kept: no scaling assumed


@pytest.mark.parametrize("on_disk", [False, True])
@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 9, 10), np.int64), r"dtype int64; give uint8, uint16 or floating-point pixels \(numpy: x.astype"),
        (np.zeros((3, 9, 10), bool), "dtype bool; give uint8, uint16"),
        (np.zeros((3, 9, 10), np.int8), "dtype int8"),
        (np.zeros((3, 9, 10, 5)), r"shape \(3, 9, 10, 5\); give images as \[N, H, W\] \(one channel\), \[N, H, W, C\]"),
        (np.zeros((3, 6, 9, 10)), r"shape \(3, 6, 9, 10\)"),
        (np.zeros((3, 9)), r"shape \(3, 9\)"),
    ],
)
def test_arrays_of_another_dtype_or_layout_are_refused_with_the_fix(tmp_path, array, message, on_disk):
    np.save(tmp_path / "x.npy", array)
    np.save(tmp_path / "y.npy", np.zeros(len(array), int))
    with pytest.raises(InputError, match=message):
        data.load_arrays(tmp_path / "x.npy", tmp_path / "y.npy", lazy=on_disk)


def test_arrays_from_npz_and_npy(tmp_path):
    x = np.random.default_rng(0).random((6, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 2, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    loaded = data.load_arrays(tmp_path / "d.npz")
    assert loaded.x.shape == (6, 1, 8, 8) and loaded.y.tolist() == y.tolist()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert data.load_arrays(tmp_path / "x.npy", tmp_path / "y.npy").y.tolist() == y.tolist()
    with pytest.raises(InputError, match=r"set data\.labels"):
        data.load_arrays(tmp_path / "x.npy")
    np.savez(tmp_path / "e.npz", images=x)
    with pytest.raises(InputError, match="lacks x, y"):
        data.load_arrays(tmp_path / "e.npz")
    np.save(tmp_path / "short.npy", y[:4])
    with pytest.raises(InputError, match="one integer label per image"):
        data.load_arrays(tmp_path / "x.npy", tmp_path / "short.npy")
    np.save(tmp_path / "neg.npy", y - 1)
    with pytest.raises(InputError, match="negative label"):
        data.load_arrays(tmp_path / "x.npy", tmp_path / "neg.npy")


def test_image_folder_round_trip(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    written = {}
    for cls in ("cat", "ant"):  # classes are the sorted folder names: ant=0, cat=1
        (tmp_path / cls).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
            written[(cls, i)] = pixels
    images, classes = data.load_image_folder(tmp_path)
    assert classes == ["ant", "cat"]
    assert images.x.shape == (6, 3, 10, 12) and images.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(images.x[4].transpose(1, 2, 0), written[("cat", 1)])
    Image.fromarray(rng.integers(0, 256, (11, 12, 3), dtype=np.uint8)).save(tmp_path / "cat" / "9.png")
    with pytest.raises(InputError, match=r"data\.image_size"):
        data.load_image_folder(tmp_path)
    resized, _ = data.load_image_folder(tmp_path, image_size=(8, 9))
    assert resized.x.shape == (7, 3, 8, 9)
    (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"broken\.png"):
        data.load_image_folder(tmp_path, image_size=(8, 9))


def test_stratified_split_holds_out_each_class():
    y = np.repeat(np.arange(4), [10, 20, 2, 1])
    rest, held = data.stratified_split(y, 0.2, seed=0)
    assert np.bincount(y[held], minlength=4).tolist() == [2, 4, 1, 0]
    assert sorted(np.concatenate([rest, held]).tolist()) == list(range(len(y)))
