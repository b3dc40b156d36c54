"""ImageNet-style image folders (one subfolder per WordNet id) labelled with ImageNet-1k class indices."""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge
from torch.utils.data import Dataset

from neuronimp.data.bundle import DATASETS, DataBundle, need_dir
from neuronimp.errors import UsageError

IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
WNID = re.compile(r"^n\d{8}$")
IMAGENET_CLASSES = 1000


class ImageFolderData(Dataset):
    """Image files with integer labels; items (transform(PIL RGB image), label). Keeps `files`, `y`, `wnids`."""

    def __init__(self, files: list[Path], y: torch.Tensor, wnids: list[str],
                 transform: Callable[[Any], Any] | None) -> None:
        self.files = files
        self.y = torch.as_tensor(y, dtype=torch.long)  # [N] ImageNet-1k class index of each file
        self.wnids = wnids  # the class folders used, in item order
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image, UnidentifiedImageError

        path = self.files[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise UsageError(f"cannot read image {path}: {e}") from e
        x = self.transform(img) if self.transform is not None else to_tensor(img)
        return x, int(self.y[i])

    def with_labels(self, y: torch.Tensor) -> "ImageFolderData":
        """The same files with labels `y` (used for label corruption)."""
        return ImageFolderData(self.files, y, self.wnids, self.transform)


def to_tensor(img: Any) -> torch.Tensor:
    """PIL RGB image -> float32 [3, H, W] in [0, 1] (torchvision's to_tensor without importing it)."""
    a = np.asarray(img, dtype=np.uint8)  # H x W x 3
    return torch.from_numpy(a.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)


def read_class_index(path: str | Path) -> tuple[dict[str, int], dict[str, str]]:
    """wnid -> class index and wnid -> human name, from a JSON or a txt class index file.

    JSON: Keras' imagenet_class_index.json ({"0": ["n01440764", "tench"], ...}) or {"n01440764": 0, ...}.
    txt: one wnid per line in class-index order, optionally followed by its name
    ("n01440764 tench, Tinca tinca", the layout of LOC_synset_mapping.txt).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"class_index file {p} does not exist; expected a JSON or txt ImageNet class index")
    index: dict[str, int] = {}
    names: dict[str, str] = {}
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            data = json.loads(text)
            for k, v in data.items():
                if isinstance(v, (list, tuple)):  # Keras: "index": [wnid, name]
                    index[str(v[0])], names[str(v[0])] = int(k), str(v[1]) if len(v) > 1 else str(v[0])
                else:  # wnid: index
                    index[str(k)], names[str(k)] = int(v), str(k)
        else:
            for line in text.splitlines():
                if not line.strip():
                    continue
                wnid, _, name = line.strip().partition(" ")
                if wnid in index:
                    raise ValueError(f"wnid {wnid} appears twice")
                index[wnid], names[wnid] = len(index), name.strip() or wnid
    except (ValueError, TypeError, IndexError, AttributeError, UnicodeDecodeError) as e:
        raise UsageError(f"class_index file {p} is not a valid class index ({e}); expected Keras' "
                         f"imagenet_class_index.json, a JSON wnid->index map, or a txt of wnids") from e
    if not index:
        raise UsageError(f"class_index file {p} is empty; expected one entry per ImageNet class")
    if len(set(index.values())) != len(index):
        raise UsageError(f"class_index file {p} gives the same index to two wnids")
    return index, names


def list_images(folder: Path, per_class: int | None) -> list[Path]:
    """Image files of one class folder, sorted by name, the first `per_class` of them."""
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise UsageError(f"{folder} holds no images; expected files ending in {', '.join(IMAGE_EXTS)}")
    return files[:per_class] if per_class is not None else files


def pick_wnids(root: Path, present: list[str], wnids: Sequence[str] | str | None) -> list[str]:
    """The class folders to use: all present ones (sorted) or the requested subset, order kept."""
    if wnids is None:
        return present
    wanted = [w.strip() for w in wnids.split(",")] if isinstance(wnids, str) else [str(w) for w in wnids]
    if not wanted:
        raise UsageError("imagenet_folder: wnids is empty; give at least one WordNet id or leave it unset")
    for w in wanted:
        if w not in present:
            close = difflib.get_close_matches(w, present, n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else f"; {len(present)} folders present"
            raise UsageError(f"{root} has no class folder for wnid {w!r}{hint}")
    if len(set(wanted)) != len(wanted):
        raise UsageError(f"imagenet_folder: wnids lists a WordNet id twice: {wanted}")
    return wanted


@DATASETS.register("imagenet_folder", aliases=("image_folder",))
def imagenet_folder(*, root: str | Path | None = None, wnids: Sequence[str] | str | None = None,
                    transform: Callable[[Any], Any] | None = None, per_class: Annotated[int, Ge(1)] | None = None,
                    class_index: str | Path | None = None) -> DataBundle:
    """Folder of <wnid>/*.JPEG (ImageNet val layout); labels are ImageNet-1k indices; train is test."""
    if root is None:
        raise UsageError("imagenet_folder needs root=<folder with one subfolder per WordNet id>")
    r = need_dir(root, "a folder with one subfolder per WordNet id (n01440764/*.JPEG)")
    present = sorted(d.name for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not present:
        raise UsageError(f"{r} has no class subfolders; expected one folder per WordNet id (n01440764/*.JPEG)")

    if class_index is not None:
        index, names = read_class_index(class_index)
    elif len(present) == IMAGENET_CLASSES and all(WNID.match(w) for w in present):
        index = {w: i for i, w in enumerate(present)}  # the standard order: sorted wnids
        names = {w: w for w in present}
    else:
        raise UsageError(
            f"{r} holds {len(present)} class folders, not all {IMAGENET_CLASSES} ImageNet ones, so the "
            f"ImageNet-1k index of each cannot be inferred; give class_index=<imagenet_class_index.json "
            f"or a txt of the 1000 wnids in index order>")

    used = pick_wnids(r, present, wnids)
    missing = [w for w in used if w not in index]
    if missing:
        raise UsageError(f"class folder(s) {', '.join(missing[:5])} of {r} are not in the class index "
                         f"({len(index)} wnids); remove them or select others with wnids=[...]")

    files: list[Path] = []
    labels: list[int] = []
    for w in used:
        fs = list_images(r / w, per_class)
        files += fs
        labels += [index[w]] * len(fs)
    ds = ImageFolderData(files, torch.tensor(labels, dtype=torch.long), used, transform)

    num_classes = max(index.values()) + 1
    by_index = {i: w for w, i in index.items()}
    class_names = [names.get(by_index[i], by_index[i]) if i in by_index else str(i) for i in range(num_classes)]
    x0 = ds[0][0]
    return DataBundle(
        train=ds,  # one folder: the evaluation set serves as both splits
        test=ds,
        num_classes=num_classes,
        class_names=class_names,
        vocab=None,
        input_shape=tuple(x0.shape) if hasattr(x0, "shape") else (),
    )
