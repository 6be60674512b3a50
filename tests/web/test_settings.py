"""The page's settings: the link's round trip, its checks, and the controls derived from the
registry of method options (sensitivity.engine.choices.METHODS)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensitivity.engine import choices
from sensitivity.engine.choices import (
    DEFAULT_METHOD,
    METHODS,
    MethodInfo,
    Option,
    shown_options,
)
from sensitivity.web.settings import (
    SIZES,
    VIEW_OPTIONS,
    ViewSettings,
    method_options,
    offered_size,
    option_controls,
    page_sizes,
    settings_from_query,
    view_fields,
)


def test_defaults_make_an_empty_query():
    assert ViewSettings().to_query() == {}


def test_round_trip_through_the_query_string():
    view = ViewSettings(method="smoothgrad", layer="group2_block1", channel=3,
                        classes=(2, 5), sign="signed", k=42, opacity=0.25,
                        shared_scale=False, compare="methods",
                        compare_items=("gradient", "gradcam"),
                        options={"noise": 0.2, "variant": "vargrad", "plus_plus": True})
    query = view.to_query()
    assert query["classes"] == "2,5" and query["shared_scale"] == "0"
    assert query["noise"] == "0.2" and query["variant"] == "vargrad" and query["plus_plus"] == "1"
    again, problems = settings_from_query(query)
    assert problems == []
    assert again == view


def test_options_at_their_page_default_are_not_kept_or_linked():
    view = ViewSettings(options={"samples": 32, "steps": 64})  # the page starts at 32 for both
    assert view.options == {"steps": 64}
    assert view.to_query() == {"steps": "64"}
    assert view.option("samples") == 32 and view.option("steps") == 64
    with pytest.raises(ValueError, match="wobble"):
        ViewSettings(options={"wobble": 1})


def test_the_size_follows_the_models_native_size_unless_the_link_sets_it():
    assert settings_from_query({})[0].size is None  # the page uses the model's native size
    assert settings_from_query({"size": "48"})[0].size == 48
    assert settings_from_query({"size": "none"})[0].size is None
    assert ViewSettings(size=224).to_query(native_size=224) == {}
    assert ViewSettings(size=32).to_query(native_size=224) == {"size": "32"}
    assert settings_from_query(ViewSettings(size=32).to_query(native_size=224))[0].size == 32
    # A fully convolutional model: the page's sizes and its own; a fixed input: its own only.
    assert page_sizes(48) == (32, 48, 64, 96, 128, 160, 224)
    assert page_sizes(32) == SIZES
    assert page_sizes(299) == (*SIZES, 299)
    assert page_sizes(224, fixed=True) == (224,)
    # The side a card's find_objects rule was chosen at is offered too (not to a fixed input).
    assert page_sizes(32, rule_side=144) == (32, 64, 96, 128, 144, 160, 224)
    assert page_sizes(32, rule_side=96) == SIZES
    assert page_sizes(224, fixed=True, rule_side=144) == (224,)
    assert offered_size(None, page_sizes(48), 48) == 48
    assert offered_size(50, page_sizes(48), 48) == 48
    assert offered_size(80, SIZES, 32) == 64  # a tie: the smaller
    assert offered_size(1000, SIZES, 32) == 224
    assert offered_size(32, (224,), 224) == 224


def test_class_indices_are_not_bounded_by_ten():
    """Any model's classes: the indices are checked against the model's outputs later."""
    view, problems = settings_from_query({"classes": "999,1,99"})
    assert view.classes == (1, 99, 999) and not problems


def test_malformed_values_are_ignored_and_reported():
    query = {"method": "rm -rf", "k": "-3", "classes": "1,-2", "opacity": "nan-ish",
             "sign": "positive", "unknown": "x", "layer": "<script>", "steps": "many"}
    view, problems = settings_from_query(query)
    assert view.method == DEFAULT_METHOD and view.classes == ()
    assert view.k == 1  # clamped into 1..1024, with a note
    assert view.sign == "positive"
    assert view.layer == "<script>"  # any string; the app checks it against the model
    assert view.options == {}
    assert len(problems) == 6
    for name in ("method", "k", "classes", "opacity", "unknown", "steps"):
        assert sum(p.startswith(f"ignored {name}=") or p.startswith(f"{name}=")
                   for p in problems) == 1, name


def test_the_reported_link_is_clamped_not_refused():
    """?method=integrated_gradients&steps=512 once broke the page (its slider stops at 256)."""
    view, problems = settings_from_query({"method": "integrated_gradients", "steps": "512",
                                          "samples": "200", "noise": "-1", "patch": "0"})
    assert view.option("steps") == 256 and view.option("samples") == 128
    assert view.option("noise") == 0.0 and view.option("patch") == 1
    assert len(problems) == 4 and "steps='512' from the link is outside 2 to 256" in problems[0]


def test_each_shown_option_has_one_control_drawn_from_its_declaration():
    expected = {  # by hand, from the page's controls
        "gradient": [],
        "smoothgrad": [("samples", "slider", {"min_value": 1, "max_value": 128}),
                       ("noise", "slider", {"min_value": 0.0, "max_value": 0.5, "step": 0.01}),
                       ("variant", "selectbox", {"options": ("mean", "squared", "vargrad")})],
        "integrated_gradients": [
            ("steps", "slider", {"min_value": 2, "max_value": 256}),
            ("path_sampling", "selectbox", {"options": ("adaptive", "uniform")}),
            ("baseline", "selectbox", {"options": ("black", "blurred", "noise")})],
        "gradcam": [("plus_plus", "checkbox", {})],
        "occlusion": [("patch", "slider", {"min_value": 1, "max_value": 16})],
    }
    for method, controls in expected.items():
        found = option_controls(method)
        assert [(c.name, c.widget, c.arguments) for c in found] == controls, method
        assert all(c.key == f"w_option_{c.name}" and c.label for c in found)


def test_method_options_are_what_the_page_passes_to_the_method():
    view = ViewSettings(method="integrated_gradients", options={"steps": 8})
    assert method_options(view) == {"steps": 8, "path_sampling": "adaptive", "baseline": "black"}
    assert method_options(view, "smoothgrad") == {"samples": 32, "noise": 0.15,
                                                  "variant": "mean"}
    inner = ViewSettings(layer="group3", layer_reduction="l2", channel=5)
    assert method_options(inner, "gradient") == {"layer_reduction": "l2", "channel": 5}


def test_every_declaration_is_consistent():
    names = set(view_fields()) | {"options"}
    for name, option in shown_options().items():
        assert name not in names  # a link key means one setting
        assert option.kind in ("int", "float", "choice", "bool") and not option.optional
    for info in METHODS.values():
        for option in info.options.values():
            if option.kind is not None:
                assert option.check(option.default) == option.default
    with pytest.raises(ValueError, match="not a value"):
        Option(300, "too many", kind="int", minimum=1, maximum=256)
    with pytest.raises(ValueError, match="minimum and a maximum"):
        Option(3, "no range", kind="int")
    assert Option(3, "positional, as before").kind is None  # library calls only


def test_page_defaults_are_declared_once_in_the_registry():
    assert DEFAULT_METHOD in METHODS
    view = ViewSettings()
    assert view.method == DEFAULT_METHOD and view.size is None  # the model's native size
    assert settings_from_query({})[0] == view
    # Another method is linked; the default one never is.
    other = next(m for m in METHODS if m != DEFAULT_METHOD)
    assert ViewSettings(method=other).to_query() == {"method": other}


def test_caveats_above_the_native_size_and_slow_methods():
    for method in ("gradient", "gradient_x_input", "guided_backprop"):
        info = METHODS[method]
        assert info.caveat_at(32) == "" and "use cam, or explain" in info.caveat_at(64)
        assert info.caveat_at(64, native_size=64) == "" and info.caveat_at(96, native_size=64)
        # Explaining the position head's target, the methods find the object.
        assert info.caveat_at(96, layer="position_probabilities") == ""
        assert info.caveat_at(96, layer="probabilities") == info.caveat_at(96)
    assert all(METHODS[m].caveat_at(size) == "" for m in ("gradcam", "cam")
               for size in (32, 64, 224))
    assert MethodInfo("always", caveat="careful").caveat_at(32) == "careful"
    assert {m for m, info in METHODS.items() if info.slow} == {
        "smoothgrad", "integrated_gradients", "occlusion", "scorecam", "rise"}


def test_adding_a_method_option_is_one_declaration(monkeypatch):
    """A fake method with a new option: its control, its link round trip and its CLI flag."""
    from sensitivity.cli.explain import method_option_values
    from sensitivity.cli.parsers import build_parser

    wobble = Option(3, "how much to wobble", kind="int", minimum=1, maximum=9, shown=True,
                    label="Wobble", page_default=5)
    monkeypatch.setitem(choices.METHODS, "fake", MethodInfo("a fake method", {"wobble": wobble}))

    (control,) = option_controls("fake")
    assert (control.widget, control.label, control.arguments) == (
        "slider", "Wobble", {"min_value": 1, "max_value": 9})
    view, problems = settings_from_query({"method": "fake", "wobble": "7"})
    assert problems == [] and view.option("wobble") == 7
    assert view.to_query() == {"method": "fake", "wobble": "7"}
    assert method_options(view) == {"wobble": 7}
    assert method_options(ViewSettings(method="fake")) == {"wobble": 5}
    assert settings_from_query({"wobble": "70"})[0].option("wobble") == 9

    args = build_parser().parse_args(["explain", "a.png", "--method", "fake",
                                      "--option", "wobble=8"])
    assert method_option_values(args.method, args.options) == {"wobble": 8}
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["explain", "a.png", "--option", "wobble=10"])
    assert exit_info.value.code == 2


def test_an_option_shown_with_a_switch_has_a_control_only_while_the_switch_is_on():
    # CAM's exponent acts on its per-position probability only.
    def names(values=None):
        return [control.name for control in option_controls("cam", values)]

    # (Its pixel detail and mirror image act on any CAM map: always shown.)
    assert names() == names({"probability": True}) == ["probability", "exponent", "detail",
                                                       "mirror"]
    assert names({"probability": False}) == names({}) == ["probability", "detail", "mirror"]
    # The switch must be a shown bool option of the same method, and the option shown.
    wobble = Option(3, "how much to wobble", kind="int", minimum=1, maximum=9, shown=True,
                    shown_with="loud")
    for loud in (None, Option(False, "loud", kind="bool"),
                 Option(1, "loud", kind="int", minimum=0, maximum=2, shown=True)):
        options = {"wobble": wobble} | ({"loud": loud} if loud else {})
        with pytest.raises(ValueError, match="shown with 'loud'"):
            MethodInfo("a fake method", options)
    hidden = Option(3, "how much to wobble", kind="int", minimum=1, maximum=9,
                    shown_with="loud")
    with pytest.raises(ValueError, match="shown with 'loud'"):
        MethodInfo("a fake method", {"wobble": hidden,
                                     "loud": Option(False, "loud", kind="bool", shown=True)})
    fine = MethodInfo("a fake method", {"wobble": wobble,
                                        "loud": Option(False, "loud", kind="bool", shown=True)})
    assert fine.options["wobble"].shown_with == "loud"


# --- A link can never give a value outside its declaration ------------------------------------

OPTION_NAMES = sorted(shown_options())
KEYS = [*view_fields(), *OPTION_NAMES, "options", "unknown", "embed"]


def texts() -> st.SearchStrategy[str]:
    numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True,
                                                                allow_infinity=True))
    words = st.sampled_from(["", "none", "None", "1", "0", "true", "nan", "inf", "-0", "1e400",
                             "1,2,99", " 5 ", "gradient", "smoothgrad", "adaptive", "logits",
                             "group3", *METHODS, *map(str, SIZES)])
    return st.one_of(numbers.map(str), words, st.text(max_size=12))


QUERIES = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
                          st.one_of(texts(), st.lists(texts(), max_size=3)), max_size=12)


def assert_within_declarations(view: ViewSettings) -> None:
    assert view.method in METHODS
    for name, option in VIEW_OPTIONS.items():
        assert option.check(getattr(view, name)) == getattr(view, name), name
    assert all(c >= 0 for c in view.classes) and len(view.compare_items) <= 8
    for name, option in shown_options().items():
        value = view.option(name)
        assert option.check(value) == value, name
        if option.kind in ("int", "float"):
            assert option.minimum <= value <= option.maximum and math.isfinite(value)
        if option.kind == "int":
            assert type(value) is int


@settings(max_examples=400, deadline=None)
@given(QUERIES)
def test_any_query_gives_settings_within_their_declarations(query):
    view, problems = settings_from_query(query)
    assert_within_declarations(view)
    assert len(problems) <= len(query)
    again, more = settings_from_query(view.to_query())
    assert more == [] and again == view


def test_readme_holds_the_method_table():
    from sensitivity.engine.choices import method_table
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = "<!-- method table: generated by sensitivity.engine.choices.method_table(); do not edit"
    begin = readme.index("-->\n", readme.index(start)) + len("-->\n")
    end = readme.index("<!-- end of method table -->")
    assert readme[begin:end] == method_table(), (
        "regenerate README.md's method table from sensitivity.engine.choices.method_table()")
    table = method_table().splitlines()
    assert len(table) == 2 + len(METHODS) + 1 + sum(
        len(info.options) for info in METHODS.values()) + len(choices.COMMON_OPTIONS)
    assert any(row.startswith("| | `steps` | `50` | `32` | a whole number from 2 to 256 |")
               for row in table)
