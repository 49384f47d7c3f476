"""The training job's source directory, and the model's code folder, built from this package.

Standard library only: the stack calls ``write_source_tarball`` at synth, where torch is
not installed.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PACKAGE_NAME = PACKAGE.name
# SageMaker script mode runs the archive's train.py, and the inference container loads
# code/inference.py (SAGEMAKER_PROGRAM): copies of the package's modules at the root.
TRAINING_ENTRY_POINT = "train.py"
INFERENCE_ENTRY_POINT = "inference.py"
# Any fixed time: the archive's bytes must not depend on when or where it was built.
FIXED_MTIME = 315532800  # 1980-01-01T00:00:00Z


def package_files() -> list[Path]:
    """The package's modules, in name order (no caches, no tests)."""
    return sorted(path for path in PACKAGE.glob("*.py") if path.is_file())


def write_source_tarball(path: str | os.PathLike[str]) -> None:
    """Write the source directory as a gzipped tar: ``train.py`` and ``detector/*.py``.

    The same package gives the same bytes: entries sorted, times, owners and modes fixed,
    and no name or time in the gzip header.
    """
    entries = [(TRAINING_ENTRY_POINT, PACKAGE / TRAINING_ENTRY_POINT)]
    entries += [(f"{PACKAGE_NAME}/{file.name}", file) for file in package_files()]
    with (
        Path(path).open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as archive,
    ):
        archive.addfile(_entry(PACKAGE_NAME, tarfile.DIRTYPE, 0o755, 0))
        for name, file in entries:
            content = file.read_bytes()
            archive.addfile(_entry(name, tarfile.REGTYPE, 0o644, len(content)), io.BytesIO(content))


def _entry(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def copy_inference_code(code_dir: Path) -> None:
    """Fill a model's ``code/`` folder: ``inference.py`` and the package beside it."""
    package_dir = code_dir / PACKAGE_NAME
    package_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PACKAGE / INFERENCE_ENTRY_POINT, code_dir / INFERENCE_ENTRY_POINT)
    for file in package_files():
        shutil.copyfile(file, package_dir / file.name)
