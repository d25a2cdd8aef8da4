import os

import pytest

from lavr_core.errors import InputError
from lavr_core.fileio import atomic_write_text, atomic_writer, safe_output_path


def test_safe_output_path_counts_and_nests(tmp_path):
    p1 = safe_output_path(tmp_path, "lavr/orbit", "json")
    assert p1 == tmp_path / "lavr" / "orbit_00001.json"
    atomic_write_text(p1, "{}")
    (tmp_path / "lavr" / "orbit_00007.json").write_text("{}")
    assert safe_output_path(tmp_path, "lavr/orbit", ".json").name == "orbit_00008.json"
    assert safe_output_path(tmp_path, "lavr/orbit", "ply").name == "orbit_00001.ply"


@pytest.mark.parametrize("prefix", ["../x", "a/../../x", "/etc/passwd", "C:/x", "", "a\x00b", "..\\x", "."])
def test_safe_output_path_refuses_escapes(tmp_path, prefix):
    with pytest.raises(InputError):
        safe_output_path(tmp_path / "out", prefix, "json")
    assert not any(p.name.startswith("x") for p in tmp_path.rglob("*"))


def test_safe_output_path_refuses_symlink_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", out / "link")
    with pytest.raises(InputError, match="outside"):
        safe_output_path(out, "link/x", "json")


def test_atomic_writer_leaves_old_file_on_error(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_writer(p, "w") as f:
            f.write("new partial")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]
