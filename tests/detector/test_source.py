"""The training job's source tarball (detector.source): what the stack uploads at synth."""

from __future__ import annotations

import tarfile

from detector import source
from tests.conftest import ROOT

PACKAGE_MODULES = [
    "__init__.py", "imaging.py", "inference.py", "metrics.py", "models.py", "scenes.py",
    "source.py", "targets.py", "train.py", "weights.py",
]  # fmt: skip


def test_the_tarball_holds_train_py_at_its_root_and_the_package_beside_it(tmp_path):
    path = tmp_path / "sourcedir.tar.gz"
    # A cache left by an earlier run must not be shipped.
    (ROOT / "detector" / "__pycache__").mkdir(exist_ok=True)

    source.write_source_tarball(path)

    with tarfile.open(path) as archive:
        members = archive.getmembers()
        names = [member.name for member in members]
        entry_point = archive.extractfile("train.py")
        assert entry_point is not None
        assert entry_point.read() == (ROOT / "detector" / "train.py").read_bytes()
    assert names == ["detector", "train.py"] + [f"detector/{name}" for name in PACKAGE_MODULES]
    # 315532800 s after 1970 is 1980-01-01T00:00:00Z.
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {
        (315532800, 0, 0, "", "")
    }


def test_the_tarball_is_the_same_bytes_every_time(tmp_path):
    first, second = tmp_path / "first.tar.gz", tmp_path / "second.tar.gz"
    source.write_source_tarball(first)
    (ROOT / "detector" / "train.py").touch()  # a newer file time changes nothing

    source.write_source_tarball(str(second))

    assert first.read_bytes() == second.read_bytes()  # same code: determinism
    # gzip header: bytes 4-7 are the time, 0 when none is stored.
    assert first.read_bytes()[4:8] == b"\x00\x00\x00\x00"


def test_the_model_code_folder_holds_inference_py_and_the_package(tmp_path):
    source.copy_inference_code(tmp_path / "code")

    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py")) == sorted(
        ["code/inference.py"] + [f"code/detector/{name}" for name in PACKAGE_MODULES]
    )
    assert (tmp_path / "code" / "inference.py").read_bytes() == (
        ROOT / "detector" / "inference.py"
    ).read_bytes()
