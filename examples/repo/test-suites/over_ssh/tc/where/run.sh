#!/bin/sh
echo "@slavename@ is $(hostname), addresses $(hostname -I 2>/dev/null || echo '?')"
echo "logged in as $(id -un), home $HOME, working in $PWD"
