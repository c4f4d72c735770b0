"""``python tests/sanitized.py``: test paths replace its default targets, options filter them."""

from tests.sanitized import names_tests


def test_options_alone_filter_the_default_targets():
    assert not names_tests([])
    assert not names_tests(["-k", "bybit"])
    assert not names_tests(["-x", "-k", "tests"])  # a -k word, not a folder


def test_paths_replace_them():
    assert names_tests(["tests/test_native.py"])
    assert names_tests(["-x", "tests/venues/okx/test_frame_reader.py::test_anything"])
    assert names_tests(["tests/venues/"])
    assert not names_tests(["tests/no_such_file.py"])  # not there: still the default list
