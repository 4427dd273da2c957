import warnings

import pytest

from mpsearch.errors import InvalidSpecError, UnsupportedConfigError
from mpsearch.formats import ACCELERATED, EMULATED, check_menu, default_menu, get_format, parse_menu


def test_aliases_resolve_to_canonical_names():
    assert get_format("fp8").name == "fp8_e4m3"
    assert get_format(" FP16 ").name == "fp16"
    assert parse_menu("fp16, fp8 ,int8") == ("fp16", "fp8_e4m3", "int8")


def test_unknown_format_names_the_value_and_the_choices():
    with pytest.raises(InvalidSpecError, match=r"unknown format 'fp12'.*fp16"):
        get_format("fp12")


def test_menu_refuses_repeats_even_through_aliases():
    with pytest.raises(InvalidSpecError, match="fp8_e4m3 twice"):
        parse_menu("fp8,fp8_e4m3")


def test_hopper_accelerates_fp8_and_int8_but_only_emulates_int4():
    assert get_format("fp8").support_on(90) == ACCELERATED
    assert get_format("int8").support_on(90) == ACCELERATED
    assert get_format("int4").support_on(90) == EMULATED
    assert get_format("int4").support_on(80) == ACCELERATED


def test_ampere_cannot_run_fp8_at_all():
    assert get_format("fp8").support_on(80) is None
    assert get_format("fp8").support_on(86) is None
    assert get_format("fp8").support_on(89) == ACCELERATED
    with pytest.raises(UnsupportedConfigError, match="fp8_e4m3 cannot run on sm_80"):
        check_menu(["fp16", "fp8_e4m3"], 80)


def test_minor_revision_inherits_its_major_architecture():
    assert get_format("int4").support_on(87) == ACCELERATED  # like sm_86
    assert get_format("fp16").support_on(100) is None  # unknown major: not assumed


def test_default_menus_follow_the_architecture():
    assert default_menu(90) == ("fp16", "fp8_e4m3", "int8")
    assert default_menu(80) == ("fp16", "int8", "int4")
    with pytest.raises(UnsupportedConfigError, match="sm_120"):
        default_menu(120)


def test_widening_to_an_emulated_format_warns_and_reports_it():
    with pytest.warns(UserWarning, match="int4 have no tensor-core path on sm_90"):
        emulated = check_menu(["fp16", "int4"], 90)
    assert emulated == ("int4",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_menu(["fp16", "int8"], 90) == ()


def test_bits_storage_and_alignment():
    int4 = get_format("int4")
    assert (int4.bits, int4.storage_bytes, int4.alignment) == (4, 0.5, 32)
    assert get_format("fp16").alignment == 8
