"""What a deploy sends of an image: the layers a board lacks (by Docker's chain ids), in an archive whose bytes
depend only on what is in it; and which of a board's images the current recipes still use."""

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from edgeorch import images
from edgeorch.arch import Arch
from edgeorch.plan import Target, chain_ids, first_missing, images_to_keep
from edgeorch.recipes import Build


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


BASE, PACKAGES, WHEELS, CODE, CODE2 = (digest(n) for n in ("base", "packages", "wheels", "code", "code2"))


def test_chain_ids_follow_the_oci_image_spec():
    # ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))
    one = "sha256:" + hashlib.sha256(f"{BASE} {PACKAGES}".encode()).hexdigest()
    two = "sha256:" + hashlib.sha256(f"{one} {WHEELS}".encode()).hexdigest()
    assert chain_ids([BASE, PACKAGES, WHEELS]) == [BASE, one, two]


def test_a_board_with_nothing_lacks_every_layer():
    assert first_missing([BASE, PACKAGES, CODE], []) == 0


def test_a_board_with_the_image_lacks_nothing():
    assert first_missing([BASE, PACKAGES, CODE], [[BASE, PACKAGES, CODE]]) == 3


def test_a_change_of_code_sends_only_the_last_layer():
    assert first_missing([BASE, PACKAGES, WHEELS, CODE2], [[BASE, PACKAGES, WHEELS, CODE]]) == 3


def test_a_second_framework_on_the_same_base_does_not_send_the_base():
    assert first_missing([BASE, PACKAGES, digest("onnx wheels"), CODE], [[BASE, PACKAGES, WHEELS, CODE]]) == 2


def test_a_layer_held_on_another_base_counts_as_missing():
    # the same diff id over other layers is another layer to docker load: it and all above it go
    assert first_missing([BASE, WHEELS, CODE], [[digest("other base"), WHEELS, CODE]]) == 0
    assert first_missing([BASE, WHEELS, CODE], [[BASE, PACKAGES, CODE], [BASE, WHEELS]]) == 2


@pytest.fixture
def layers(tmp_path, monkeypatch):
    """An image of three layers in the blob store of a cache of its own."""
    monkeypatch.setenv("EDGEORCH_CACHE", str(tmp_path))
    tars = []
    for i, size in enumerate((300_000, 20_000, 700)):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(f"file{i}")
            info.size = size
            tar.addfile(info, io.BytesIO(bytes([i + 1]) * size))
        tars.append(raw.getvalue())
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    (tmp_path / "blobs").mkdir()
    for data in (*tars, config):
        (tmp_path / "blobs" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    cfg = hashlib.sha256(config).hexdigest()
    return images.ImageLayers(image_id=f"sha256:{cfg}", tag="edgeorch/tflite:x", config=cfg,
                              diff_ids=tuple(diff_ids), sizes=tuple(len(t) for t in tars))


def members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_the_archive_leaves_out_the_layers_the_board_has(layers):
    archive = images.layer_archive(layers, 2, "gzip")
    got = members(archive)
    manifest = json.loads(got.pop("manifest.json"))
    # docker load reads every layer's path from the manifest, and skips those whose chain its engine holds
    assert manifest == [{"Config": f"{layers.config}.json", "RepoTags": ["edgeorch/tflite:x"],
                         "Layers": [f"{d.removeprefix('sha256:')}/layer.tar" for d in layers.diff_ids]}]
    assert set(got) == {f"{layers.config}.json", f"{layers.diff_ids[2].removeprefix('sha256:')}/layer.tar"}
    assert hashlib.sha256(got[f"{layers.diff_ids[2].removeprefix('sha256:')}/layer.tar"]).hexdigest() == \
        layers.diff_ids[2].removeprefix("sha256:")
    assert layers.bytes_from(2) == layers.sizes[2] + len(images.blob(layers.config).read_bytes())


def test_the_archive_is_the_same_bytes_each_time_it_is_made(layers, tmp_path):
    first = images.layer_archive(layers, 0, "gzip")
    made = first.read_bytes()
    first.unlink()
    assert images.layer_archive(layers, 0, "gzip").read_bytes() == made  # a cut transfer of it can be resumed
    assert images.layer_archive(layers, 1, "gzip") != first  # another set of layers is another file


@pytest.mark.parametrize("codec", images.CODECS)
def test_every_codec_gives_the_same_layers(layers, codec):
    archive = images.layer_archive(layers, 0, codec)
    if codec == "zstd":
        import zstandard
        data = zstandard.ZstdDecompressor().stream_reader(archive.open("rb")).read()
    else:
        data = gzip.decompress(archive.read_bytes()) if codec == "gzip" else archive.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(m.name for m in tar)
    assert len(names) == 5 and archive.name.endswith(images.SUFFIX[codec])


def target(framework="tflite", version="2.14.0", suite="bookworm"):
    return Target(framework=framework, arch=Arch.ARM64, build=Build(version=version, packages=(), arches=(Arch.ARM64,)),
                  suite=suite, image_python="3.11", native_python="3.11", native_glibc=(2, 36))


def image(i, created, framework="tflite", version="2.14.0", suite="bookworm", arch="arm64"):
    labels = {"org.edgeorch": "1", "org.edgeorch.framework": framework, "org.edgeorch.framework-version": version,
              "org.edgeorch.arch": arch, "org.edgeorch.suite": suite}
    return {"id": f"sha256:{i}", "created": created, "labels": labels}


def test_clean_keeps_the_newest_image_of_each_current_build():
    found = [image(1, "2026-11-01T10:00:00Z"), image(2, "2026-12-01T10:00:00Z"),  # an older build of the recipe
             image(3, "2026-12-02T10:00:00Z", version="2.13.0"),                 # a version no recipe has now
             image(4, "2026-12-02T10:00:00Z", suite="trixie"),                   # another release's base
             image(5, "2026-12-02T10:00:00Z", framework="onnxruntime", version="1.32.0")]
    assert images_to_keep(found, [target(), target("onnxruntime", "1.32.0")], "org.edgeorch") == {"sha256:2",
                                                                                                     "sha256:5"}
    assert images_to_keep(found, [], "org.edgeorch") == set()
