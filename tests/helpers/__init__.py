"""Small real data the tests build (tiny cohorts, DICOM exports, tiny networks): imported as ``tests.helpers.*``,
never from a conftest and never through ``sys.path`` edits, so any subset of the suite collects in any order."""
