"""
test_build_hardening — the binaries are built the way a hardened distribution
package would be: position independent (ASLR for the code too), full RELRO
(the GOT read-only after start), stack canaries, and in the optimised build
glibc's FORTIFY checks.  Read from the ELF files with readelf (binutils).
"""
import os
import subprocess

from harness import RELAYD, ROOT, run, test

RELEASE = os.path.abspath(os.path.join(ROOT, os.environ.get("RELEASE", "build/relayd")))


def readelf(*args):
    return subprocess.run(["readelf"] + list(args), capture_output=True, text=True,
                          timeout=60, check=True).stdout


def check(path, fortify):
    assert os.path.exists(path), "%s is not built" % path
    assert "Type:                              DYN" in readelf("-h", path), "not PIE: " + path
    assert "GNU_RELRO" in readelf("-lW", path), "no RELRO: " + path
    dyn = readelf("-dW", path)
    assert "BIND_NOW" in dyn or "FLAGS_1" in dyn and " NOW" in dyn, "no BIND_NOW: " + path
    syms = readelf("--dyn-syms", "-W", path)
    assert "__stack_chk_fail" in syms, "no stack protector: " + path
    if fortify:
        assert any(s in syms for s in ("__snprintf_chk", "__memcpy_chk", "__sprintf_chk",
                                       "__vsnprintf_chk")), "no FORTIFY: " + path


@test
def test_release_build_is_hardened():
    check(RELEASE, fortify=True)


@test
def test_sanitizer_build_is_pie_with_relro():
    check(RELAYD, fortify=False)


if __name__ == "__main__":
    run()
