"""Loading the data that ``icon-dsl train --data`` points at.

``load_dataset`` turns the ``--data`` argument into a validated ``Dataset``: float32 features
(N x D, all finite, N >= 1, D >= 1) and, when the source has them, int64 labels of length N.
Every user mistake becomes a ``DataError`` whose message names the file, the column, the row or
the shapes involved; no numpy traceback reaches the user. A file is checked by its content as
well as its name (a zip archive named .npy is reported as one). Rows and columns are numbered
from 0, as numpy indexes them; a .csv error also gives the 1-based line of the file.
"""

from __future__ import annotations

import csv
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from icon_dsl.train.errors import DataError, TrainNote

BUILTIN_DATASETS = ("digits",)
ACCEPTED_EXTENSIONS = (".npy", ".npz", ".csv")
NPZ_FEATURE_KEYS = ("x", "X", "features")
NPZ_LABEL_KEYS = ("y", "labels")
NPZ_SIDE_KEY = "side"  # side information for `side` specs (LGSimCLR, X-Sample): (N, S)
NPZ_ADJACENCY_KEY = "adjacency"  # a graph over the samples for `graph(index)` specs: (N, N)
CSV_DEFAULT_LABEL_COLUMNS = ("label", "y")
#: Float labels must be integers of at most this size: beyond it float64 cannot hold every
#: integer, so two classes could collapse into one.
FLOAT_LABEL_LIMIT = 2**53
INT64_MAX = np.iinfo(np.int64).max
#: How each format's files begin (numpy's .npy magic string; a zip archive's local header or,
#: for an empty archive, its end record).
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated data set.

    ``x`` is a float32 array of shape (N, D); ``y`` is None or an int64 array of shape (N,);
    ``image_shape`` is None or (H, W) with H * W == D (all checked in ``__post_init__``). One
    made by ``load_dataset`` also has N >= 1, D >= 1 and only finite values. Equality is
    identity, as the fields hold arrays.
    """

    name: str
    x: np.ndarray
    y: np.ndarray | None
    image_shape: tuple[int, int] | None = None
    side: np.ndarray | None = None  # float32 (N, S): side information per sample
    adjacency: np.ndarray | None = None  # float32 (N, N): nonnegative graph weights
    source: str = ""  # where it came from, for messages: the file's path; "" means ``name``

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32 or self.x.ndim != 2:
            raise ValueError(f"Dataset.x must be float32 (N, D), got {self.x.dtype} {self.x.shape}")
        n = self.x.shape[0]
        if self.side is not None and (
            self.side.dtype != np.float32 or self.side.ndim != 2 or self.side.shape[0] != n
        ):
            raise ValueError(f"Dataset.side must be float32 ({n}, S), got {self.side.shape}")
        if self.adjacency is not None and (
            self.adjacency.dtype != np.float32 or self.adjacency.shape != (n, n)
        ):
            raise ValueError(
                f"Dataset.adjacency must be float32 ({n}, {n}), got {self.adjacency.shape}"
            )
        if self.y is not None and (self.y.dtype != np.int64 or self.y.shape != self.x.shape[:1]):
            raise ValueError(
                f"Dataset.y must be int64 of shape ({self.x.shape[0]},), "
                f"got {self.y.dtype} {self.y.shape}"
            )
        if self.image_shape is not None:
            height, width = self.image_shape
            if height * width != self.x.shape[1]:
                raise ValueError(
                    f"Dataset.image_shape {self.image_shape} does not match D={self.x.shape[1]}"
                )

    @property
    def origin(self) -> str:
        """The data's file (or name) as messages show it."""
        return self.source or self.name

    @property
    def n_samples(self) -> int:
        """N, the number of rows."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """D, the number of feature columns."""
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int | None:
        """The number of distinct labels, or None when the data set has no labels."""
        return None if self.y is None else int(np.unique(self.y).size)


def load_dataset(spec: str | None, label_column: str | None = None) -> Dataset:
    """Load the data named by ``spec``.

    ``spec`` is None or ``"digits"`` (scikit-learn's bundled 8 x 8 digits: 1797 x 64, pixels
    scaled to [0, 1], 10 classes), or a path ending ``.npy`` (a 2-D feature array, no labels),
    ``.npz`` (features under ``x``, ``X`` or ``features``; optional labels under ``y`` or
    ``labels``) or ``.csv`` (a header row, then numeric rows; the label column is
    ``label_column``, else a column named ``label`` or ``y`` when there is one).
    ``label_column`` is only meaningful for a .csv. Raises DataError for any unusable input.
    """
    if spec is None or spec == "digits":
        if label_column is not None:
            raise DataError("--label-column only applies to a .csv file, not to 'digits'")
        return load_digits()
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix not in ACCEPTED_EXTENSIONS:
        raise DataError(
            f"{spec}: unknown data; expected one of the built-in data sets "
            f"({', '.join(BUILTIN_DATASETS)}) or a file ending "
            f"{', '.join(ACCEPTED_EXTENSIONS[:-1])} or {ACCEPTED_EXTENSIONS[-1]}"
        )
    if not path.exists():
        raise DataError(f"{path}: the data file does not exist")
    if not path.is_file():
        raise DataError(f"{path}: is not a file")
    _check_content(path, suffix)
    if suffix == ".csv":
        return _load_csv(path, label_column)
    if label_column is not None:
        raise DataError(f"{path}: --label-column only applies to a .csv file")
    if suffix == ".npy":
        return _load_npy(path)
    return _load_npz(path)


def load_digits() -> Dataset:
    """scikit-learn's digits: x (1797, 64) float32 in [0, 1], y int64 in 0..9, image (8, 8)."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target).astype(np.int64)
    return Dataset(name="digits", x=x, y=y, image_shape=(8, 8))


def require_labels(ds: Dataset, why: str) -> np.ndarray:
    """Return ``ds.y``; raise DataError saying ``why`` the spec needs labels when there are none."""
    how = "pass a .npz with y or a .csv with a label column"
    return _require(ds.y, f"labels ({why})", how, ds.origin)


def require_side(ds: Dataset, why: str) -> np.ndarray:
    """Return ``ds.side``; raise DataError saying ``why`` when the data set has none."""
    how = f"pass a .npz with a {NPZ_SIDE_KEY!r} array of shape (N, S) beside the features"
    return _require(ds.side, f"side information ({why})", how, ds.origin)


def require_adjacency(ds: Dataset, why: str) -> np.ndarray:
    """Return ``ds.adjacency``; raise DataError saying ``why`` when the data set has none."""
    how = f"pass a .npz with an {NPZ_ADJACENCY_KEY!r} array of shape (N, N) (nonnegative weights)"
    return _require(ds.adjacency, f"a graph over the samples ({why})", how, ds.origin)


def _require(array: np.ndarray | None, what: str, how: str, origin: str) -> np.ndarray:
    if array is None:
        raise DataError(f"{origin}: the spec needs {what} but the data has none; {how}")
    return array


def check_trainable(ds: Dataset) -> None:
    """Training needs pairs of samples: DataError for a data set of fewer than 2 rows."""
    if ds.n_samples < 2:
        raise DataError(
            f"{ds.origin}: {ds.n_samples} row; training compares samples in pairs, so it needs "
            "at least 2 rows"
        )


def _check_content(path: Path, suffix: str) -> None:
    """The file's first bytes agree with its extension; DataError says what it really is."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror})") from None
    if not head and suffix != ".csv":  # an empty .csv is reported by the .csv reader
        raise DataError(f"{path}: the file is empty")
    found = ".npy" if head.startswith(NPY_MAGIC) else None
    if head.startswith(ZIP_MAGICS):
        found = ".npz"
    if found == suffix:
        return
    if found is not None:
        kind = "a numpy .npy array" if found == ".npy" else "a zip archive (a numpy .npz)"
        raise DataError(
            f"{path}: the file's content is {kind}, not a {suffix} file; rename it to end in "
            f"{found}"
        )
    if suffix != ".csv":
        kind, writer = ("a .npy array", "save") if suffix == ".npy" else ("a .npz archive", "savez")
        raise DataError(
            f"{path}: could not read it as {kind}: the file starts with {head!r}, not as one "
            f"does; write it with numpy.{writer}"
        )


def _load_npy(path: Path) -> Dataset:
    array = _read_npy(path)
    x = _as_features(array, f"{path}")
    return Dataset(name=path.stem, x=x, y=None, source=str(path))


def _read_npy(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: could not read it as a .npy array ({error})") from None
    return np.asarray(loaded)


def _load_npz(path: Path) -> Dataset:
    arrays = _read_npz(path)
    feature_key = next((key for key in NPZ_FEATURE_KEYS if key in arrays), None)
    if feature_key is None:
        found = ", ".join(sorted(arrays)) or "none"
        raise DataError(
            f"{path}: no features found; expected a key named one of "
            f"{', '.join(NPZ_FEATURE_KEYS)} (keys found: {found})"
        )
    x = _as_features(arrays[feature_key], f"{path}[{feature_key!r}]")
    label_key = next((key for key in NPZ_LABEL_KEYS if key in arrays), None)
    y = None
    if label_key is not None:
        y = _as_labels(arrays[label_key], f"{path}[{label_key!r}]", x.shape[0])
    side = None
    if NPZ_SIDE_KEY in arrays:
        source = f"{path}[{NPZ_SIDE_KEY!r}]"
        side = _as_features(arrays[NPZ_SIDE_KEY], source)
        if side.shape[0] != x.shape[0]:
            raise DataError(
                f"{source}: {side.shape[0]} rows of side information for {x.shape[0]} samples"
            )
    adjacency = None
    if NPZ_ADJACENCY_KEY in arrays:
        adjacency = _as_adjacency(arrays[NPZ_ADJACENCY_KEY], f"{path}[{NPZ_ADJACENCY_KEY!r}]", x)
    return Dataset(name=path.stem, x=x, y=y, side=side, adjacency=adjacency, source=str(path))


def _as_adjacency(array: np.ndarray, source: str, x: np.ndarray) -> np.ndarray:
    """Validate graph weights: (N, N) for N samples, finite and nonnegative, as float32."""
    n = x.shape[0]
    if array.shape != (n, n):
        raise DataError(
            f"{source}: the graph must be ({n}, {n}) for {n} samples, got shape {array.shape}"
        )
    weights = _as_features(array, source)
    if (weights < 0).any():
        row, col = (int(i) for i in np.argwhere(weights < 0)[0])
        raise DataError(
            f"{source}: graph weights must be nonnegative, row {row} column {col} is "
            f"{weights[row, col]}"
        )
    return weights


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: np.asarray(archive[key]) for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: could not read it as a .npz archive ({error})") from None


def _as_features(
    array: np.ndarray, source: str, columns: Sequence[str] | None = None
) -> np.ndarray:
    """Validate a feature array and return it as float32 (N, D); ``source`` names it in errors."""
    if array.ndim != 2:
        raise DataError(
            f"{source}: features must be a 2-D array (N samples, D features), "
            f"got {array.ndim}-D with shape {array.shape}; reshape it to (N, D)"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{source}: the data is empty (shape {array.shape})")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{source}: features must be numeric, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise DataError(f"{source}: features must be real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore"):
        x = array.astype(np.float32)
    _check_finite(x, array, source, columns)
    return x


def _check_finite(
    x: np.ndarray, original: np.ndarray, source: str, columns: Sequence[str] | None
) -> None:
    bad = np.argwhere(~np.isfinite(x))
    if bad.size == 0:
        return
    row, col = (int(i) for i in bad[0])
    column = f"column {columns[col]!r}" if columns is not None else f"column {col}"
    value = original[row, col]
    reason = "" if not np.isfinite(value) else " (too large for float32)"
    raise DataError(
        f"{source}: non-finite value {value} at row {row}, {column}{reason}; "
        f"{len(bad)} bad value(s) in all"
    )


def _as_labels(array: np.ndarray, source: str, n_samples: int) -> np.ndarray:
    """Validate labels and return them as int64 (N,); ``source`` names them in errors."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DataError(f"{source}: labels must be 1-D (N,), got shape {array.shape}")
    if array.shape[0] != n_samples:
        raise DataError(
            f"{source}: labels length mismatch: expected {n_samples} labels "
            f"(one per row of the features), got {array.shape[0]}"
        )
    if array.dtype == np.bool_:
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.integer):
        too_large = array > INT64_MAX if array.dtype == np.uint64 else np.zeros(len(array), bool)
        _refuse_labels(array, too_large, source, f"at most {INT64_MAX} (int64)")
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{source}: labels must be integers, got dtype {array.dtype}")
    with np.errstate(invalid="ignore"):
        not_integer = ~np.isfinite(array) | (array != np.round(array))
    if not_integer.any():
        row = int(np.argmax(not_integer))
        raise DataError(f"{source}: labels must be integers, got {array[row]} at row {row}")
    _refuse_labels(array, np.abs(array) > FLOAT_LABEL_LIMIT, source, "between -2^53 and 2^53")
    return array.astype(np.int64)


def _refuse_labels(array: np.ndarray, bad: np.ndarray, source: str, limit: str) -> None:
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{source}: labels must be integers {limit}, got {array[row]} at row {row} "
            f"({int(bad.sum())} such label(s)); number the classes 0, 1, 2, ..."
        )


def _load_csv(path: Path, label_column: str | None) -> Dataset:
    header, rows = _read_csv(path)
    label_index = _label_column_index(path, header, label_column)
    values = _parse_csv_cells(path, header, rows)
    feature_indices = [i for i in range(len(header)) if i != label_index]
    if not feature_indices:
        raise DataError(f"{path}: the data is empty (no feature columns besides the labels)")
    feature_names = [header[i] for i in feature_indices]
    x = _as_features(values[:, feature_indices], f"{path}", feature_names)
    y = None
    if label_index is not None:
        y = _as_labels(values[:, label_index], f"{path} column {header[label_index]!r}", len(x))
    else:
        _note_no_label_column(path, feature_names)
    return Dataset(name=path.stem, x=x, y=y, source=str(path))


def _note_no_label_column(path: Path, features: list[str]) -> None:
    shown = features if len(features) <= 12 else [*features[:8], "...", *features[-2:]]
    defaults = " or ".join(repr(name) for name in CSV_DEFAULT_LABEL_COLUMNS)
    warnings.warn(
        f"{path}: no column is named {defaults}, so the data has no labels and all "
        f"{len(features)} columns are features ({', '.join(shown)}); if one of them holds "
        "labels, name it with --label-column NAME (label_column= in Python)",
        TrainNote,
        stacklevel=2,
    )


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Return the header and the non-blank data rows, each with its 1-based line number."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            lines = _numbered_rows(handle)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: could not read it as a .csv file ({error})") from None
    if not lines:
        raise DataError(f"{path}: the data is empty (no header row)")
    header = [cell.strip() for cell in lines[0][1]]
    _check_header(path, header)
    rows = lines[1:]
    if not rows:
        raise DataError(f"{path}: the data is empty (a header row but no data rows)")
    for row_index, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {row_index} (line {line}) has {len(row)} cells, "
                f"expected {len(header)} like the header"
            )
    return header, rows


def _numbered_rows(handle: TextIO) -> list[tuple[int, list[str]]]:
    reader = csv.reader(handle)
    numbered: list[tuple[int, list[str]]] = []
    for row in reader:
        if any(cell.strip() for cell in row):
            numbered.append((reader.line_num, row))
    return numbered


def _check_header(path: Path, header: list[str]) -> None:
    if all(_is_number(cell) for cell in header):
        raise DataError(
            f"{path}: the first row looks like data ({', '.join(header[:4])}...); "
            "a .csv needs a header row naming the columns"
        )
    seen: set[str] = set()
    for index, name in enumerate(header):
        if not name:
            raise DataError(f"{path}: column {index} has an empty name in the header")
        if name in seen:
            raise DataError(f"{path}: column name {name!r} appears twice in the header")
        seen.add(name)


def _label_column_index(path: Path, header: list[str], label_column: str | None) -> int | None:
    if label_column is not None:
        if label_column not in header:
            raise DataError(
                f"{path}: no label column {label_column!r}; columns are {', '.join(header)}"
            )
        return header.index(label_column)
    for name in CSV_DEFAULT_LABEL_COLUMNS:
        if name in header:
            return header.index(name)
    return None


def _parse_csv_cells(
    path: Path, header: list[str], rows: list[tuple[int, list[str]]]
) -> np.ndarray:
    """Parse every cell as a float64; the first unparsable cell is named by row and column."""
    try:
        return np.array([row for _, row in rows], dtype=np.float64)
    except ValueError:
        pass  # find the culprit cell below (and accept what python's float() accepts)
    values = np.empty((len(rows), len(header)), dtype=np.float64)
    for row_index, (line, row) in enumerate(rows):
        for col_index, cell in enumerate(row):
            try:
                values[row_index, col_index] = float(cell)
            except ValueError:
                what = f"non-numeric value {cell.strip()!r}" if cell.strip() else "empty cell"
                raise DataError(
                    f"{path}: {what} at row {row_index} (line {line}), column {header[col_index]!r}"
                ) from None
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
