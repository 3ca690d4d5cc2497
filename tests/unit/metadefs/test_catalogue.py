"""Catalogue files: the shipped ones parse, and the file format round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glimpse.domain.errors import InvalidInput
from glimpse.domain.metadefs import IMAGE_RESOURCE_TYPE, value_problem
from glimpse.metadefs import catalogue


def test_shipped_files_parse_and_round_trip() -> None:
    documents = catalogue.shipped_documents()
    assert [name for name, _ in documents] == [
        "image-common.json", "image-libvirt.json", "image-vmware.json", "image-xenapi.json"]
    for name, document in documents:
        content = catalogue.parse(document, name)
        assert content.namespace.protected and content.namespace.visibility == "public"
        assert [a.name for a in content.resource_type_associations] == [IMAGE_RESOURCE_TYPE]
        assert catalogue.parse(catalogue.to_document(content), "again") == content
        for prop in content.properties:
            default = prop.schema.get("default")
            if default is not None:  # every default fits its own definition
                assert value_problem(str(default), prop.schema) is None, prop.name


def test_read_documents_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({"namespace": "B"}))
    (tmp_path / "a.json").write_text(json.dumps({"namespace": "A", "visibility": "public"}))
    (tmp_path / "notes.txt").write_text("not a catalogue file")
    documents = catalogue.read_documents(tmp_path)
    assert [Path(name).name for name, _ in documents] == ["a.json", "b.json"]
    content = catalogue.parse(documents[1][1], "b.json")
    assert content.namespace.owner == "admin" and content.namespace.visibility == "private"
    with pytest.raises(InvalidInput):
        catalogue.read_documents(tmp_path / "notes.txt")  # a file that is not JSON
    with pytest.raises(InvalidInput):
        catalogue.read_documents(tmp_path / "empty")  # no *.json files


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "JSON object"),
        ({}, "'namespace'"),
        ({"namespace": "X", "visibility": "shared"}, "visibility"),
        ({"namespace": "X", "properties": {"p": {"title": "P"}}}, "type"),
        ({"namespace": "X", "objects": [{"description": "no name"}]}, "name"),
        ({"namespace": "X", "objects": [{"name": "o", "required": "p"}]}, "required"),
        ({"namespace": "X", "tags": "a,b"}, "list"),
        ({"namespace": "X", "display_name": 3}, "string"),
    ],
)
def test_bad_documents_name_the_file_and_the_problem(document: object, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        catalogue.parse(document, "my-file.json")
    assert caught.value.message.startswith("my-file.json: ")
    assert problem in caught.value.message


def test_file_names() -> None:
    assert catalogue.file_name("Glimpse::Image::Libvirt") == "Glimpse-Image-Libvirt.json"
    assert catalogue.file_name("::") == "namespace.json"
