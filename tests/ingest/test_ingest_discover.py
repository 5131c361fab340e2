"""Discovery: one listing of SOURCE serves the reuse check, the image candidates and stage.json."""

import os

from pipeline.ingest.discover import SourceListing, discover


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_listing_is_pathlib_ordered_regular_files_and_follows_file_links_not_folder_links(tmp_path):
    root = tmp_path / "src"
    for name in ("b/x.dcm", "a/z.dcm", "a/y/w.dcm", "a.dcm"):
        _touch(root / name)
    _touch(tmp_path / "outside" / "far.dcm")
    os.symlink(tmp_path / "outside", root / "linked_folder")  # rglob does not descend into it
    os.symlink(root / "a.dcm", root / "c.dcm")  # a link to a file is a file
    os.symlink(root / "gone.dcm", root / "dangling.dcm")
    listing = SourceListing.of(root)
    expected = sorted(p.relative_to(root).parts for p in root.rglob("*") if p.is_file())
    assert [parts for parts, _, _ in listing.files] == expected
    assert ("c.dcm",) in expected and not any(parts[0] == "linked_folder" for parts in expected)


def test_listing_digest_changes_with_size_mtime_or_a_new_file_and_only_then(tmp_path):
    root = tmp_path / "src"
    _touch(root / "a" / "x.dcm", b"12345")
    before = SourceListing.of(root).digest
    assert SourceListing.of(root).digest == before
    os.utime(root / "a" / "x.dcm", ns=(1, 1))
    touched = SourceListing.of(root).digest
    assert touched != before
    _touch(root / "a" / "x.dcm", b"123456")
    os.utime(root / "a" / "x.dcm", ns=(1, 1))
    assert SourceListing.of(root).digest != touched
    _touch(root / "b.dcm")
    assert len({before, touched, SourceListing.of(root).digest}) == 3


def test_discover_pairs_masks_by_folder_and_reports_orphans(tmp_path):
    root = tmp_path / "src"
    for name in ("n/x.dcm", "n/x_lungs.png", "n/x_shortcuts.png", "e/x", "e/x_lesion.png", "e/y_lungs.png"):
        _touch(root / name)
    candidates, orphans = discover(root)
    by_relative = {c.relative: c for c in candidates}
    assert sorted(by_relative) == ["e/x", "n/x.dcm"]
    north = by_relative["n/x.dcm"]
    assert north.path == str(root / "n" / "x.dcm")
    assert north.masks == {"lung": str(root / "n" / "x_lungs.png"), "shortcut": str(root / "n" / "x_shortcuts.png")}
    assert north.mask_relative == {"lung": "n/x_lungs.png", "shortcut": "n/x_shortcuts.png"}
    assert by_relative["e/x"].mask_relative == {"lesion": "e/x_lesion.png"}  # a file without suffix owns masks too
    assert orphans == ["e/y_lungs.png"]
