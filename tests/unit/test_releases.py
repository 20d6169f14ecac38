"""What each board gets, from its OS release and Python: the image's Debian base, the build, the wheels' Python, and
a refusal naming the reason and the alternatives where no build serves it."""

import pytest

from edgeorch.arch import Arch
from edgeorch.errors import ConfigError
from edgeorch.facts import parse_board_facts
from edgeorch.inventory import Board
from edgeorch.plan import plan_target
from edgeorch.recipes import get_recipe, load_bases, load_recipes
from edgeorch.releases import Platform, nearest_base, parse_os_release

BASES = load_bases()
TRIXIE = Platform(os_id="debian", codename="trixie", pretty="Debian GNU/Linux 13 (trixie)", python="3.13",
                  glibc=(2, 41))
BOOKWORM = Platform(os_id="debian", codename="bookworm", pretty="Debian GNU/Linux 12 (bookworm)", python="3.11",
                    glibc=(2, 36))
RASPBIAN = Platform(os_id="raspbian", codename="trixie", pretty="Raspbian GNU/Linux 13 (trixie)", python="3.13",
                    glibc=(2, 41))
JAMMY = Platform(os_id="ubuntu", codename="jammy", pretty="Ubuntu 22.04.5 LTS", python="3.10", glibc=(2, 35))
NOBLE = Platform(os_id="ubuntu", codename="noble", pretty="Ubuntu 24.04.3 LTS", python="3.12", glibc=(2, 39))


def board(arch=Arch.ARM64, name="pi"):
    return Board(name=name, host="127.0.0.1", user="root", arch=arch)


def test_the_three_debian_releases_have_bases_with_their_python():
    assert {s: b.python for s, b in BASES.items()} == {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}


@pytest.mark.parametrize("platform, suite, noted", [
    (TRIXIE, "trixie", False), (BOOKWORM, "bookworm", False), (RASPBIAN, "trixie", False),
    (JAMMY, "bookworm", True), (NOBLE, "trixie", True),
    (Platform(os_id="fedora", codename="", pretty="Fedora Linux 41", python="3.13", glibc=(2, 40)), "trixie", True),
    (Platform(os_id="debian", codename="buster", pretty="Debian 10", python="3.7", glibc=(2, 28)), "bullseye", True),
])
def test_a_board_maps_to_its_own_release_or_the_nearest_with_a_note(platform, suite, noted):
    got, note = nearest_base(platform, BASES)
    assert got == suite and (note is not None) == noted
    if note:
        assert platform.pretty in note and f"Debian {suite}" in note


def test_a_trixie_board_gets_the_current_onnxruntime_on_a_trixie_image_with_cp313_wheels():
    t = plan_target(get_recipe("onnxruntime"), board(), TRIXIE, BASES)
    assert (t.suite, t.build.version, t.image_python, t.native_python) == ("trixie", "1.32.0", "3.13", "3.13")
    assert t.note is None


def test_python_310_gets_the_older_onnxruntime_that_has_cp310_wheels_in_both_modes():
    jetson = Platform(os_id="ubuntu", codename="jammy", pretty="Ubuntu 22.04", python="3.10", glibc=(2, 35))
    t = plan_target(get_recipe("onnxruntime"), board(), jetson, BASES)
    # the image is bookworm (Python 3.11), the board 3.10: one build must serve both, so both run 1.22.1
    assert (t.suite, t.build.version, t.image_python, t.native_python) == ("bookworm", "1.22.1", "3.11", "3.10")
    assert "Ubuntu 22.04" in t.note


def test_opencv_follows_numpy_major_5_on_trixie_4_on_bookworm():
    r = get_recipe("opencv")
    assert plan_target(r, board(), TRIXIE, BASES).build.version.startswith("5.")
    assert plan_target(r, board(), BOOKWORM, BASES).build.version.startswith("4.11")


def test_armv7_on_trixie_takes_debians_onnxruntime_and_opencv():
    for name, package in (("onnxruntime", "python3-onnxruntime"), ("opencv", "python3-opencv")):
        t = plan_target(get_recipe(name), board(Arch.ARMV7), RASPBIAN, BASES)
        assert t.build.debian == (package,) and t.build.packages == () and t.suite == "trixie"
        # a rootfs of its own: the base's packages and the framework's, no other framework's
        assert BASES["trixie"].key(Arch.ARMV7, t.build.debian) != BASES["trixie"].key(Arch.ARMV7)


def test_armv7_on_bookworm_is_refused_before_anything_is_built_with_the_reason_and_the_way_out():
    with pytest.raises(ConfigError) as e:
        plan_target(get_recipe("onnxruntime"), board(Arch.ARMV7, "rpi3-bookworm"), BOOKWORM, BASES)
    assert "rpi3-bookworm" in e.value.message and "Debian trixie's python3-onnxruntime" in e.value.message
    assert "bookworm" in e.value.message and "in native mode" in e.value.message
    assert "--mode both" in e.value.hint and "python:" in e.value.hint


def test_tflite_on_python_313_is_refused_pointing_at_litert():
    with pytest.raises(ConfigError, match="stop at cp311.*litert"):
        plan_target(get_recipe("tflite"), board(), TRIXIE, BASES)


def test_tflite_in_docker_and_bare_on_trixie_runs_on_a_bookworm_image():
    for modes in (("docker",), ("bare",), ("docker", "bare")):  # bare mode is the image's userland: its release
        t = plan_target(get_recipe("tflite"), board(), TRIXIE, BASES, modes=modes)
        assert t.suite == "bookworm" and t.image_python == "3.11" and "the image's release" in t.note


def test_caffe_needs_bullseye_for_native_mode_but_runs_in_docker_and_bare_anywhere():
    with pytest.raises(ConfigError, match="bullseye"):
        plan_target(get_recipe("caffe"), board(Arch.AMD64), BOOKWORM, BASES)
    assert plan_target(get_recipe("caffe"), board(Arch.AMD64), BOOKWORM, BASES,
                       modes=("docker", "bare")).suite == "bullseye"


def test_a_vendor_image_has_no_bare_mode():
    with pytest.raises(ConfigError, match="tensorrt has no bare mode: its image is the board vendor's") as e:
        plan_target(get_recipe("tensorrt"), board(), BOOKWORM, BASES, modes=("docker", "bare"))
    assert "--mode docker,native" in e.value.hint


def test_every_recipe_build_pins_every_package_and_every_gap_has_a_reason():
    for r in load_recipes().values():
        for b in r.builds:
            assert all("==" in p for p in r.packages_for(b, b.arches[0])), r.framework
        for arch in r.arches:
            for py in ("3.9", "3.10", "3.11", "3.12", "3.13"):
                served = any(arch in b.arches and (not b.pythons or py in b.pythons) for b in r.builds)
                assert served == (r.why_not(arch, py) is None), (r.framework, arch, py)


def test_board_facts_read_the_os_release_python_and_glibc():
    text = ("python=3.13.5 aarch64 64 2.41\nvenv=yes\nnumpy=2.2.4\ndocker=26.1.5\ndisk_free_kb=1048576\n"
            "os_ID=raspbian\nos_VERSION_CODENAME=trixie\nos_PRETTY_NAME=\"Raspbian GNU/Linux 13 (trixie)\"\n")
    row = parse_board_facts(text, board())
    assert row.platform == Platform(os_id="raspbian", codename="trixie", pretty="Raspbian GNU/Linux 13 (trixie)",
                                       python="3.13", glibc=(2, 41))
    assert row.os == "Raspbian GNU/Linux 13 (trixie)" and row.problems == ()
    assert parse_board_facts("python=\n", board()).platform is None


def test_os_release_quotes_and_junk():
    assert parse_os_release('ID=ubuntu\nPRETTY_NAME="Ubuntu 24.04 LTS"\n# c\nVERSION_CODENAME=noble\n') == {
        "ID": "ubuntu", "PRETTY_NAME": "Ubuntu 24.04 LTS", "VERSION_CODENAME": "noble"}
