# phalanx shell helper library: `source "$PHALANX_FUNCTIONS"` in a stage script.
# The same functions XrdTest scripts use, so existing suites run unchanged.

# log MSG...: one timestamped line.
log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"
}

# stamp CMD...: run CMD, prefixing each line it prints with a timestamp.
stamp() {
    local rc
    set +e
    "$@" 2>&1 | while IFS= read -r line; do
        printf '[%s] %s\n' "$(date +%H:%M:%S)" "$line"
    done
    rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

# run CMD...: run CMD, print its output, exit 1 if it failed.
run() {
    local rc=0
    "$@" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "command failed with exit code $rc: $*"
        exit 1
    fi
}

# assert_fail CMD...: succeed only if CMD fails; exit 1 if it succeeded.
assert_fail() {
    local rc=0
    "$@" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        log "expected failure, but it succeeded: $*"
        exit 1
    fi
    return 0
}
