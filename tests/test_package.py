import pytest

import terramind


def test_public_verbs_are_exported():
    from terramind import api

    for name in ("create_backbone", "create_model", "create_tokenizer", "create_generator"):
        assert getattr(terramind, name) is getattr(api, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        terramind.nope  # noqa: B018
