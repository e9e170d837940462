# XrdTest's helper library, as phalanx provides it: XrdTest scripts
# `source /etc/XrdTest/utils/functions.sh`; phalanx points that path here
# (or installs this file there: `phalanx agent --install-xrdtest-functions`).
# Plain POSIX sh: XrdTest suites run under /bin/sh unless a script's shebang
# says otherwise, and these functions work the same under bash and -e.

# XrdTest's scripts never had to care about stderr: it goes to stdout.
exec 2>&1

_xrdtest_now() {
    date +%H:%M:%S
}

# Each line of stdin, timestamped.
_xrdtest_lines() {
    while IFS= read -r _xrdtest_line || [ -n "$_xrdtest_line" ]; do
        printf '[%s] %s\n' "$(_xrdtest_now)" "$_xrdtest_line"
    done
}

# One command: a single argument is shell text (XrdTest's `run "a | b"`),
# several are a command and its arguments, kept as they are.
_xrdtest_call() {
    if [ "$#" -eq 1 ]; then
        eval "$1"
    else
        "$@"
    fi
}

# log MSG...: one line, `[HH:MM:SS] MSG`.
log() {
    printf '[%s] %s\n' "$(_xrdtest_now)" "$*"
}

# stamp CMD...: run CMD, every line it prints timestamped; CMD's exit status.
stamp() {
    { _xrdtest_rc=$(
        { { _xrdtest_st=0; _xrdtest_call "$@" 2>&1 4>&- || _xrdtest_st=$?
            echo "$_xrdtest_st" >&3; } | _xrdtest_lines >&4; } 3>&1
    ); } 4>&1
    return "${_xrdtest_rc:-1}"
}

# run CMD...: run CMD, its output shown; if it fails, say so and end the script.
run() {
    if [ "$#" -lt 1 ]; then
        log "run: no command given"
        exit 1
    fi
    _xrdtest_st=0
    _xrdtest_call "$@" 2>&1 || _xrdtest_st=$?
    if [ "$_xrdtest_st" -ne 0 ]; then
        log "[$*] failed with exit code $_xrdtest_st"
        exit 1
    fi
}

# assert_fail CMD...: 0 when CMD fails (as expected); if it succeeds, end the script.
assert_fail() {
    _xrdtest_st=0
    _xrdtest_call "$@" 2>&1 || _xrdtest_st=$?
    if [ "$_xrdtest_st" -eq 0 ]; then
        log "[$*] succeeded, but was expected to fail"
        exit 1
    fi
    return 0
}
