#!/bin/sh
# package_deb.sh BUILD_DIR SOURCE_DIR — the .deb as a user gets it, checked where systemd cannot
# run as PID 1: cpack builds it from BUILD_DIR; its Depends (computed by dpkg-shlibdeps) and
# files are checked; dpkg installs it into a scratch root (maintainer scripts chrootless, as
# they would run there) and removes and purges it again; systemd-analyze verifies the installed
# units and rates their exposure (2.0 at most); and the installed woollyd, started as the
# unit's ExecStart says, serves a generation and stops cleanly on SIGTERM.
set -eu
build=$1
source=$2
for tool in cpack dpkg dpkg-deb dpkg-shlibdeps systemd-analyze; do
    command -v $tool >/dev/null || { echo "skipped: $tool not found (scripts/install-deps installs it)"; exit 77; }
done
tmp=$(mktemp -d)
trap 'kill $daemon 2>/dev/null || true; rm -rf "$tmp"' EXIT
daemon=
fail() { echo "FAIL: $*"; exit 1; }

(cd "$build" && cpack -G DEB -B "$tmp/out" >/dev/null)
deb=$(ls "$tmp"/out/woolly_*.deb)
echo "package: $(basename "$deb")"

depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for lib in libcaf-core0.17 libzmq5 libyaml-cpp0.7 libsystemd0 libpcre2-8-0 libstdc++6; do
    echo "$depends" | grep -q "$lib" || fail "Depends lacks $lib"
done
dpkg-deb -c "$deb" | awk '{print $6}' > "$tmp/files"
for f in ./usr/bin/woollyd ./usr/bin/woolly ./etc/woolly/woolly.yaml \
         ./usr/lib/systemd/system/woollyd.service ./usr/lib/systemd/system/woollyd@.service \
         ./usr/share/woolly/models/stories260K.gguf ./usr/share/doc/woolly/README.md; do
    grep -qx "$f" "$tmp/files" || fail "the package lacks $f"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/woolly/woolly.yaml ||
    fail "/etc/woolly/woolly.yaml is not a conffile"

root="$tmp/root"
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info"
touch "$root/var/lib/dpkg/status"
dpkg="dpkg --root=$root --force-depends --force-script-chrootless --force-not-root --log=/dev/null"
$dpkg -i "$deb" >/dev/null 2>&1 || fail "dpkg -i into a scratch root"
[ -x "$root/usr/bin/woollyd" ] && [ -f "$root/etc/woolly/woolly.yaml" ] || fail "files not installed"

# systemd-analyze wants the targets the unit is ordered against and ExecReload's /bin/kill
# where it looks: the host's, copied into the scratch root beside the package.
mkdir -p "$root/bin"
cp /bin/kill "$root/bin/"
cp -n /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/"
for unit in woollyd.service woollyd@big.service; do
    out=$(systemd-analyze verify --root="$root" "$unit" 2>&1) || fail "verify $unit: $out"
    [ -z "$out" ] || fail "verify $unit printed: $out"
    exposure=$(systemd-analyze security --offline=yes --root="$root" "$unit" 2>/dev/null |
               sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    echo "$unit: verify clean, exposure $exposure"
    awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || fail "$unit exposure $exposure > 2.0"
done

# The daemon as ExecStart starts it (the scratch root's paths; ipc endpoints of this test, so
# that it does not take the default ports).
exec_start=$(sed -n 's/^ExecStart=//p' "$root/usr/lib/systemd/system/woollyd.service")
[ "$exec_start" = "/usr/bin/woollyd --config /etc/woolly/woolly.yaml" ] || fail "ExecStart is $exec_start"
cmd=$(echo "$exec_start" | sed "s|/usr/bin/|$root/usr/bin/|; s|/etc/woolly/|$root/etc/woolly/|")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$cmd --model "$root/usr/share/woolly/models/stories260K.gguf" \
    --requests "ipc://$tmp/req" --tokens "ipc://$tmp/tok" --http "127.0.0.1:$port" 2>"$tmp/log" &
daemon=$!
text=$(echo "Once upon a time" | "$root/usr/bin/woolly" generate --requests "ipc://$tmp/req" \
       --tokens "ipc://$tmp/tok" -n 12 --temp 0 --timeout 60)
echo "generated:$text"
echo "$text" | grep -q "there was a little girl" || fail "the installed daemon's stream: $text"
# Its HTTP API, as the README's quick start uses it.
reply=$(curl -sS "http://127.0.0.1:$port/v1/completions" \
        -d '{"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}')
echo "http:$reply"
echo "$reply" | grep -q '"text":", there was a little girl named Lily. She"' || fail "the installed daemon's HTTP reply: $reply"
kill -TERM $daemon
wait $daemon || fail "woollyd exited $? on SIGTERM: $(cat "$tmp/log")"
daemon=

$dpkg -r woolly >/dev/null 2>&1 || fail "dpkg -r"
[ ! -e "$root/usr/bin/woollyd" ] && [ -f "$root/etc/woolly/woolly.yaml" ] ||
    fail "remove should take the binaries and keep the conffile"
$dpkg -P woolly >/dev/null 2>&1 || fail "dpkg -P"
[ ! -e "$root/etc/woolly/woolly.yaml" ] || fail "purge should take the conffile"
echo "1 passed, 0 failed"
