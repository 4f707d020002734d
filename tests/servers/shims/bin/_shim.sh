# Shared by the shell shims of the sandboxed test nodes (tests/servers/sshd.py); see _shim.py.
# The hot shims are shell: a python start costs ~20 ms of CPU, which would dominate benchmarks.
STATE=/run/cubeinstall-shims

# Append argv as one JSON line to the calls log (a sed only for arguments that need escaping).
record() {
    line="\"${0##*/}\""
    for arg in "$@"; do
        case $arg in
            *\\*|*\"*|*"	"*) arg=$(printf '%s' "$arg" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g') ;;
        esac
        line="$line, \"$arg\""
    done
    printf '[%s]\n' "$line" >> "$STATE/calls.log"
}

# A test can hold a shim's next call to land a kill mid-stage: $STATE/hold-<name> holds
# the call that many seconds (once).
hold() {
    if [ -f "$STATE/hold-$1" ]; then
        seconds=$(cat "$STATE/hold-$1"); rm -f "$STATE/hold-$1"; sleep "$seconds"
    fi
}
