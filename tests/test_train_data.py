"""Data loading (icon_dsl.train.data) and augmented views (icon_dsl.train.augment)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from icon_dsl.train import augment
from icon_dsl.train.augment import make_views
from icon_dsl.train.data import Dataset, load_dataset, require_labels
from icon_dsl.train.errors import DataError

# --- digits ---------------------------------------------------------------------------------


def test_digits_is_the_default_and_has_the_documented_shape() -> None:
    for spec in (None, "digits"):
        ds = load_dataset(spec)
        assert ds.name == "digits"
        assert ds.x.shape == (1797, 64)
        assert ds.x.dtype == np.float32
        assert ds.y is not None and ds.y.dtype == np.int64 and ds.y.shape == (1797,)
        assert ds.n_classes == 10
        assert sorted(np.unique(ds.y).tolist()) == list(range(10))
        assert ds.image_shape == (8, 8)
        assert ds.x.min() == 0.0 and ds.x.max() == 1.0


# --- .npy / .npz ----------------------------------------------------------------------------


def test_npy_features_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "feats.npy"
    np.save(path, np.arange(12, dtype=np.int32).reshape(4, 3))
    ds = load_dataset(str(path))
    assert ds.name == "feats"
    assert ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x, np.arange(12).reshape(4, 3))
    assert ds.y is None and ds.image_shape is None and ds.n_classes is None


@pytest.mark.parametrize(("xkey", "ykey"), [("x", "y"), ("X", "labels"), ("features", None)])
def test_npz_recognised_keys(tmp_path: Path, xkey: str, ykey: str | None) -> None:
    path = tmp_path / "d.npz"
    arrays = {xkey: np.ones((3, 2))}
    if ykey is not None:
        arrays[ykey] = np.array([2.0, 0.0, 1.0])  # integral floats are fine
    np.savez(path, **arrays)  # type: ignore[arg-type]
    ds = load_dataset(str(path))
    assert ds.x.shape == (3, 2)
    if ykey is None:
        assert ds.y is None
    else:
        assert ds.y is not None and ds.y.dtype == np.int64
        assert ds.y.tolist() == [2, 0, 1]


def test_npz_without_a_recognised_key_lists_the_keys_found(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, data=np.ones((3, 2)), target=np.zeros(3))
    with pytest.raises(DataError, match=r"d\.npz.*x, X, features.*keys found: data, target"):
        load_dataset(str(path))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.npy"
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*does not exist"):
        load_dataset(str(path))


def test_unknown_extension_lists_the_accepted_ones(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_text("x")
    with pytest.raises(DataError, match=r"data\.parquet.*digits.*\.npy, \.npz or \.csv"):
        load_dataset(str(path))


def test_wrong_ndim_gives_the_shape(tmp_path: Path) -> None:
    path = tmp_path / "img.npy"
    np.save(path, np.zeros((5, 8, 8)))
    with pytest.raises(DataError, match=r"img\.npy.*2-D.*got 3-D with shape \(5, 8, 8\)"):
        load_dataset(str(path))


@pytest.mark.parametrize("shape", [(0, 3), (4, 0)])
def test_empty_data(tmp_path: Path, shape: tuple[int, int]) -> None:
    path = tmp_path / "e.npy"
    np.save(path, np.zeros(shape))
    with pytest.raises(DataError, match=re.escape(f"empty (shape {shape})")):
        load_dataset(str(path))


def test_first_nan_row_and_column_are_named(tmp_path: Path) -> None:
    x = np.ones((6, 4))
    x[4, 1] = np.inf
    x[2, 3] = np.nan
    path = tmp_path / "bad.npz"
    np.savez(path, x=x)
    with pytest.raises(
        DataError, match=r"bad\.npz\['x'\]: non-finite value nan at row 2, column 3"
    ):
        load_dataset(str(path))


def test_values_too_large_for_float32_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.array([[1.0, 1e300]]))
    with pytest.raises(DataError, match=r"row 0, column 1 \(too large for float32\)"):
        load_dataset(str(path))


def test_non_integer_labels_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((3, 2)), y=np.array([0.0, 1.5, 1.0]))
    with pytest.raises(DataError, match=r"\['y'\]: labels must be integers, got 1\.5 at row 1"):
        load_dataset(str(path))


def test_string_labels_are_rejected_with_their_dtype(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((2, 2)), y=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"labels must be integers, got dtype <U1"):
        load_dataset(str(path))


def test_labels_length_mismatch_gives_expected_and_actual(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((5, 2)), labels=np.arange(4))
    with pytest.raises(DataError, match=r"\['labels'\]: .*expected 5 labels.*got 4"):
        load_dataset(str(path))


def test_unreadable_npy_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.npy"
    path.write_bytes(b"not an array")
    with pytest.raises(DataError, match=r"junk\.npy: could not read it as a \.npy array"):
        load_dataset(str(path))


def test_label_column_is_only_for_csv(tmp_path: Path) -> None:
    path = tmp_path / "f.npy"
    np.save(path, np.ones((2, 2)))
    with pytest.raises(DataError, match=r"only applies to a \.csv"):
        load_dataset(str(path), label_column="y")


# --- .csv -----------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_with_default_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "a,label,b\n1,0,2\n3,1,4.5\n\n5,1,6\n")
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.x, np.array([[1, 2], [3, 4.5], [5, 6]], dtype=np.float32))
    assert ds.y is not None and ds.y.tolist() == [0, 1, 1]


def test_csv_y_column_is_a_default_label_and_no_label_column_means_no_labels(
    tmp_path: Path,
) -> None:
    assert load_dataset(_write(tmp_path, "y,f\n1,2\n", "a.csv")).y is not None
    ds = load_dataset(_write(tmp_path, "f,g\n1,2\n", "b.csv"))
    assert ds.y is None and ds.x.shape == (1, 2)


def test_csv_named_label_column(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path, "f,cls,label\n1,3,7\n2,4,8\n"), label_column="cls")
    assert ds.y is not None and ds.y.tolist() == [3, 4]
    np.testing.assert_array_equal(ds.x, [[1, 7], [2, 8]])


def test_csv_missing_label_column_lists_the_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "f,g\n1,2\n")
    with pytest.raises(DataError, match=r"no label column 'cls'; columns are f, g"):
        load_dataset(path, label_column="cls")


def test_csv_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "a,b\n1,2\n3,oops\n")
    with pytest.raises(
        DataError, match=r"non-numeric value 'oops' at row 1 \(line 3\), column 'b'"
    ):
        load_dataset(path)


def test_csv_empty_cell(tmp_path: Path) -> None:
    path = _write(tmp_path, "a,b\n1,\n")
    with pytest.raises(DataError, match=r"empty cell at row 0 \(line 2\), column 'b'"):
        load_dataset(path)


def test_csv_nan_names_row_and_column_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "a,b,c\n1,2,3\n4,5,nan\n")
    with pytest.raises(DataError, match=r"non-finite value nan at row 1, column 'c'"):
        load_dataset(path)


def test_csv_non_integer_label(tmp_path: Path) -> None:
    path = _write(tmp_path, "a,label\n1,0\n2,0.5\n")
    with pytest.raises(
        DataError, match=r"column 'label': labels must be integers, got 0\.5 at row 1"
    ):
        load_dataset(path)


def test_csv_ragged_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "a,b\n1,2\n3\n")
    with pytest.raises(DataError, match=r"row 1 \(line 3\) has 1 cells, expected 2"):
        load_dataset(path)


def test_csv_without_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "1,2\n3,4\n")
    with pytest.raises(DataError, match=r"first row looks like data.*header row"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", r"empty \(no header row\)"), ("a,b\n", r"empty \(a header row but no data rows\)")],
)
def test_csv_empty(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(_write(tmp_path, text))


def test_csv_only_a_label_column_has_no_features(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no feature columns"):
        load_dataset(_write(tmp_path, "label\n1\n"))


def test_csv_duplicate_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="column name 'a' appears twice"):
        load_dataset(_write(tmp_path, "a,a\n1,2\n"))


# --- require_labels and Dataset ---------------------------------------------------------------


def test_require_labels_says_why_and_names_the_file(tmp_path: Path) -> None:
    ds = Dataset(name="u", x=np.zeros((2, 2), dtype=np.float32), y=None, image_shape=None)
    expected = (
        "u: the spec needs labels (p is supervised: same class) but the data has none; "
        "pass a .npz with y or a .csv with a label column"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        require_labels(ds, "p is supervised: same class")
    np.save(tmp_path / "features.npy", np.zeros((3, 2)))
    from_file = load_dataset(str(tmp_path / "features.npy"))
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'features.npy'}: the spec needs")):
        require_labels(from_file, "p is supervised: same class")
    labelled = load_dataset("digits")
    assert require_labels(labelled, "x") is labelled.y


def test_dataset_rejects_inconsistent_fields() -> None:
    x = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="image_shape"):
        Dataset(name="d", x=x, y=None, image_shape=(3, 3))
    with pytest.raises(ValueError, match="Dataset.y"):
        Dataset(name="d", x=x, y=np.zeros(2, dtype=np.int64), image_shape=None)


# --- views ------------------------------------------------------------------------------------


def _views(seed: int, image: bool, n_views: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset("digits")
    x = torch.from_numpy(ds.x[:16])
    generator = torch.Generator().manual_seed(seed)
    return make_views(x, n_views, generator, ds.image_shape if image else None)


@pytest.mark.parametrize("image", [True, False])
def test_views_shape_order_and_index(image: bool) -> None:
    views, index = _views(0, image, n_views=3)
    assert views.shape == (48, 64) and views.dtype == torch.float32
    assert index.dtype == torch.int64
    assert index.tolist() == list(range(16)) * 3  # view-major


@pytest.mark.parametrize("image", [True, False])
def test_views_are_deterministic_given_the_generator(image: bool) -> None:
    first, _ = _views(7, image)
    again, _ = _views(7, image)
    other, _ = _views(8, image)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("max_shift", [None, 0])
def test_views_of_one_sample_differ_but_stay_close(max_shift: int | None) -> None:
    """Vectors (max_shift None) and images without the geometric part (max_shift 0, as linear
    mappers get them): each view is nearer its own sample than any other sample."""
    ds = load_dataset("digits")
    x = torch.from_numpy(ds.x[:16])
    generator = torch.Generator().manual_seed(0)
    if max_shift is None:
        views, index = make_views(x, 2, generator, None)
    else:
        views, index = make_views(x, 2, generator, ds.image_shape, max_shift)
    view0, view1 = views[:16], views[16:]
    assert torch.equal(index[:16], index[16:])
    assert (view0 - view1).abs().amax(dim=1).min() > 0  # every pair differs
    distances = torch.cdist(view0, x)  # (views, samples)
    own = distances.diagonal()
    nearest_other = (distances + torch.eye(16) * 1e9).amin(dim=1)
    assert (own < nearest_other).all()


def _centroids(views: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of the bright mass (> 0.3) of each (size x size) view."""
    images = views.reshape(-1, size, size)
    bright = images * (images > 0.3)
    total = bright.sum((1, 2)).clamp_min(1e-9)
    steps = torch.arange(size, dtype=views.dtype)
    return (bright.sum(2) * steps).sum(1) / total, (bright.sum(1) * steps).sum(1) / total


def test_image_views_move_the_centre_by_at_most_the_shift() -> None:
    """Rotation and zoom turn about the centre, so a bright centre pixel moves only by the
    shift (up to one pixel, magnified by the zoom), blurred by the bilinear interpolation.
    Pixel dropout can remove part of an interpolated pixel and move its centroid, so the bound
    is checked on 99 % of the views."""
    x = torch.zeros(1, 25)
    x[0, 12] = 1.0  # a single bright pixel in the middle of a 5 x 5 image
    views, _ = make_views(x, 200, torch.Generator().manual_seed(0), (5, 5))
    kept = views[views.amax(dim=1) > 0.3]  # the pixel survived dropout
    assert len(kept) > 100
    rows, cols = _centroids(kept, 5)
    bound = 1 + augment.IMAGE_MAX_ZOOM
    assert float((rows - 2).abs().quantile(0.99)) <= bound
    assert float((cols - 2).abs().quantile(0.99)) <= bound
    assert float(rows.std()) > 0.2 and float(cols.std()) > 0.2  # it does move


def test_image_views_rotate_and_zoom() -> None:
    """A bright pixel two columns right of the centre of a 9 x 9 image: its row moves by up to
    1 + 2 sin(15 degrees) (shift plus rotation), its distance from the centre by up to
    1 + 2 * 0.2 (shift plus zoom). Pixel dropout can remove part of an interpolated pixel, so the
    bounds are checked on 95 % of the views."""
    x = torch.zeros(1, 81)
    x[0, 4 * 9 + 6] = 1.0  # row 4 (the centre row), column 6
    views, _ = make_views(x, 400, torch.Generator().manual_seed(1), (9, 9))
    kept = views[views.amax(dim=1) > 0.3]
    rows, cols = _centroids(kept, 9)
    row_moves = (rows - 4).abs()
    rotation = 2 * math.sin(math.radians(augment.IMAGE_MAX_ROTATION))
    assert float(row_moves.quantile(0.95)) <= 1 + rotation + 0.1
    radius = torch.hypot(rows - 4, cols - 4)
    assert float((radius - 2).abs().quantile(0.95)) <= 1 + 2 * augment.IMAGE_MAX_ZOOM + 0.1


def test_vector_dropout_rate_is_about_one_fifth() -> None:
    x = torch.ones(200, 50) + torch.arange(200.0)[:, None]
    views, _ = make_views(x, 2, torch.Generator().manual_seed(0), None)
    assert abs((views == 0).float().mean().item() - 0.2) < 0.01


def test_make_views_does_not_modify_its_input_and_checks_arguments() -> None:
    x = torch.rand(4, 9)
    before = x.clone()
    make_views(x, 2, torch.Generator().manual_seed(0), (3, 3))
    assert torch.equal(x, before)
    with pytest.raises(ValueError, match="image_shape"):
        make_views(x, 2, torch.Generator(), (2, 2))
    with pytest.raises(ValueError, match="n_views >= 1"):
        make_views(x, 0, torch.Generator(), None)


def test_column_vector_labels_are_accepted_but_not_matrices(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((3, 2)), y=np.array([[1], [0], [1]]))
    labels = load_dataset(str(path)).y
    assert labels is not None and labels.tolist() == [1, 0, 1]
    np.savez(path, x=np.ones((3, 2)), y=np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"labels must be 1-D \(N,\), got shape \(3, 2\)"):
        load_dataset(str(path))
