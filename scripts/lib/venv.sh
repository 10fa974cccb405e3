# shellcheck shell=bash
# The Python virtual environment the tests use, tests/.venv: the providers' SDKs pinned in
# tests/sdk/requirements.txt and the tools pinned in tests/autobahn/requirements-tools.txt.
# Debian's and Ubuntu's python3 refuse `pip install` outside a venv (PEP 668), and nothing the
# tests need belongs in the system anyway. Rebuilt when the pins change.

# test_venv ROOT: prints the venv's path, building it first when needed.
test_venv() {
    local root=$1
    local venv=$root/tests/.venv
    local pins want
    pins=("$root/tests/sdk/requirements.txt" "$root/tests/autobahn/requirements-tools.txt")
    want="$(cat "${pins[@]}" | sha256sum | cut -d' ' -f1)"
    if [[ -x $venv/bin/python3 && -f $venv/.hookcast-pins && "$(cat "$venv/.hookcast-pins")" == "$want" ]]; then
        echo "$venv"
        return 0
    fi
    command -v python3 >/dev/null || { echo "venv: python3 is needed (apt-get install python3 python3-venv)" >&2; return 1; }
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || {
        echo "venv: python3 cannot make a virtual environment (apt-get install python3-venv)" >&2
        rm -rf "$venv"
        return 1
    }
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check -r "${pins[0]}" -r "${pins[1]}" >&2 || {
        echo "venv: installing the pinned test packages into $venv failed" >&2
        return 1
    }
    echo "$want" >"$venv/.hookcast-pins"
    echo "$venv"
}
