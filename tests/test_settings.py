from sensitivity.settings import ViewSettings, settings_from_query


def test_defaults_make_an_empty_query():
    assert ViewSettings().to_query() == {}


def test_round_trip_through_the_query_string():
    settings = ViewSettings(method="smoothgrad", layer="group2_block1", channel=3,
                            classes=(2, 5), sign="signed", k=42, opacity=0.25,
                            shared_scale=False, compare="methods",
                            compare_items=("gradient", "gradcam"), noise=0.2)
    query = settings.to_query()
    assert query["classes"] == "2,5" and query["shared_scale"] == "0"
    again, problems = settings_from_query(query)
    assert problems == []
    assert again == settings


def test_malformed_values_are_ignored_and_reported():
    query = {"method": "rm -rf", "k": "-3", "classes": "1,99", "opacity": "nan-ish",
             "sign": "positive", "unknown": "x", "layer": "<script>"}
    settings, problems = settings_from_query(query)
    assert settings.method == "gradient" and settings.k == 100 and settings.classes == ()
    assert settings.sign == "positive"
    assert settings.layer == "<script>"  # any string; the app checks it against the model
    assert len(problems) == 4
    assert any("method" in p for p in problems)
