import tomllib

import pytest

from spinalquant.config import Config, ImageParams, default_config_toml, load_config
from spinalquant.errors import ConfigError


def test_defaults_follow_the_contract():
    cfg = Config()
    assert cfg.motor_neurons.min_area_um2 == 300
    assert cfg.gfp_cells.min_area_um2 == 30
    assert cfg.synapses.distance_um == 2.0
    assert cfg.muscle.exclude_border is True
    assert cfg.image.projection == "max"


def test_toml_round_trip(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(
        '[image]\npixel_size_um = 0.4\n[motor_neurons]\nmin_area_um2 = 250\n'
        '[channels]\ngfp = "Alexa 488"\ngfap = 2\n[aliases]\nchat = ["VAChT-ChAT"]\n',
        encoding="utf-8",
    )
    cfg = load_config(p)
    assert cfg.image.pixel_size_um == 0.4
    assert isinstance(cfg.motor_neurons.min_area_um2, float)
    assert cfg.motor_neurons.min_area_um2 == 250
    assert cfg.marker("gfp") == "Alexa 488" and cfg.marker("gfap") == 2
    assert "vacht-chat" in [a.lower() for a in cfg.aliases["chat"]]
    assert "chat" in cfg.aliases["chat"]  # built-ins kept


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[motor_neurons]\nmin_aera_um2 = 250\n", "min_aera_um2"),
        ("[motorneurons]\nmin_area_um2 = 250\n", "motorneurons"),
        ('[motor_neurons]\nmin_area_um2 = "big"\n', "min_area_um2"),
        ("[image]\nprojection = \"median\"\n", "projection"),
        ("[image]\npixel_size_um = -1\n", "pixel_size_um"),
        ("[channels]\ngfp = true\n", "gfp"),
        ("[output]\nqc = 3\n", "qc"),
        ("not toml at all [", "TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_default_file_is_valid_toml_and_documents_parameters(tmp_path):
    text = default_config_toml()
    data = tomllib.loads(text)
    cfg = Config.from_dict(data)
    assert cfg.to_dict() == Config().to_dict()
    assert "min_area_um2" in text and "# " in text
    # every parameter section appears
    for section in ("gfp_cells", "motor_neurons", "puncta", "fibers", "astrocytes", "image"):
        assert f"[{section}]" in text


def test_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.image = ImageParams()  # type: ignore[misc]


def test_every_parameter_has_its_own_documentation():
    """Each key of the default file is preceded by its own comment (from the Params numpydoc)."""
    import dataclasses

    from spinalquant.config import _field_docs

    for section in dataclasses.fields(Config):
        params = getattr(Config(), section.name)
        if not dataclasses.is_dataclass(params):
            continue
        docs = _field_docs(type(params))
        missing = [f.name for f in dataclasses.fields(params) if not docs.get(f.name)]
        assert not missing, f"[{section.name}] undocumented: {missing}"
        # a description never swallows the next parameter's name (a multi-name numpydoc entry)
        for name, text in docs.items():
            assert " : " not in text, f"[{section.name}] {name}: {text[:80]}"
